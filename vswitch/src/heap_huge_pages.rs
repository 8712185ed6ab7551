//! Transparent huge pages for the heap, on by default.
//!
//! With THP in `madvise` mode (Debian's and Ubuntu's default) the kernel backs only regions a
//! program marked with `madvise(MADV_HUGEPAGE)` by 2 MiB pages, and glibc's malloc marks its
//! heaps only when the tunable `glibc.malloc.hugetlb=1` is set. Without it, a classifier of 1M
//! rules, the conntrack table and the caches live on 4 KiB pages and most probes miss the TLB
//! (a 1M-rule burst lookup took 1.8× as long). glibc 2.36 marks only the main arena as it grows
//! (and large mmap'd blocks), not the per-thread arenas, where the control threads would put
//! the flow tables; so `glibc.malloc.arena_max=1` keeps every thread on the main arena (threads
//! still take small blocks from their own cache without the arena's lock, and the forwarding
//! paths do not allocate per packet). Tunables are read once, when the program is loaded, so a
//! process that lacks them executes itself again (same pid, arguments and environment) with
//! them added. An operator who names `glibc.malloc.hugetlb` in `GLIBC_TUNABLES` (e.g. `=0` to
//! opt out) gets nothing added; one who names only `arena_max` keeps that value.

/// The glibc tunable that makes malloc `madvise` its heaps for transparent huge pages.
pub const TUNABLE: &str = "glibc.malloc.hugetlb";
/// What is added to `GLIBC_TUNABLES` (each unless named there already).
pub const ADDED: [(&str, &str); 2] = [(TUNABLE, "1"), ("glibc.malloc.arena_max", "1")];
/// The environment variable glibc reads its tunables from.
pub const ENV: &str = "GLIBC_TUNABLES";
/// Set in the environment of an executed-again process to `N;TUNABLES`: the execs so far and
/// the value it was given. It never executes itself again for the operator's or the loader's
/// sake (a program with file capabilities run by another user is loaded in secure mode, which
/// erases `GLIBC_TUNABLES`), only to retry glibc's coin flip (below), and at most
/// [`MAX_EXECS`] times.
pub const REEXEC_MARK: &str = "VSWITCH_HEAP_THP_REEXEC";
/// Most execs: glibc 2.36 (Debian 12) decides whether the kernel's mode is `madvise` with a
/// `strcmp` of a buffer it did not terminate (fixed in later releases), so it honours the tunable
/// in about half of the starts; one that did not executes itself again.
pub const MAX_EXECS: u32 = 16;

/// glibc's older name for `glibc.malloc.arena_max`; the tunable would override it.
pub const ARENA_MAX_ENV: &str = "MALLOC_ARENA_MAX";

/// The `GLIBC_TUNABLES` value to run with: `current` and those of [`ADDED`] it does not name;
/// `None` when it names [`TUNABLE`] (whatever its value: the operator chose). An operator's
/// [`ARENA_MAX_ENV`] (`arena_max_env`) counts as naming `arena_max`.
pub fn tunables_with_thp(current: Option<&str>, arena_max_env: bool) -> Option<String> {
    let current = current.unwrap_or("");
    let named = |name: &str| {
        (arena_max_env && name == "glibc.malloc.arena_max")
            || current
                .split(':')
                .any(|t| t.split('=').next() == Some(name))
    };
    if named(TUNABLE) {
        return None;
    }
    let mut value = current.to_string();
    for (name, v) in ADDED.iter().filter(|(name, _)| !named(name)) {
        if !value.is_empty() {
            value.push(':');
        }
        value.push_str(&format!("{name}={v}"));
    }
    Some(value)
}

/// Executes this program again with [`ADDED`] in `GLIBC_TUNABLES` (see [`tunables_with_thp`]).
/// Returns only when no exec was needed (`Ok`) or it failed (`Err`: the caller warns and runs
/// on without huge pages). Call it first in `main`, before any thread starts. On other C
/// libraries it does nothing.
pub fn enable() -> std::io::Result<()> {
    if secure_mode() {
        // The loader ignores tunables for a set-id or file-capability program run by another
        // user: an exec would change nothing (and the retry below would spin to its limit).
        return Ok(());
    }
    if let Some(mark) = std::env::var_os(REEXEC_MARK) {
        // glibc wrote a NUL after the first tunable's value in our environment, so the value
        // to run with is taken from the mark.
        let retry = mark
            .to_str()
            .and_then(|m| m.split_once(';'))
            .and_then(|(n, value)| {
                let n: u32 = n.parse().ok()?;
                (n < MAX_EXECS && kernel_mode_is_madvise() && heap_is_marked() == Some(false))
                    .then(|| (n + 1, value.to_string()))
            });
        return match retry {
            Some((n, value)) => exec_self(&value, n),
            None => Ok(()),
        };
    }
    let current = std::env::var_os(ENV);
    // A value that is not UTF-8 was set by someone on purpose: leave it alone.
    let Some(current) = current
        .as_deref()
        .map_or(Some(None), |v| v.to_str().map(Some))
    else {
        return Ok(());
    };
    match tunables_with_thp(current, std::env::var_os(ARENA_MAX_ENV).is_some()) {
        Some(value) if cfg!(all(target_os = "linux", target_env = "gnu")) => exec_self(&value, 1),
        _ => Ok(()),
    }
}

/// Whether the loader ran this program in secure mode (`AT_SECURE` in the auxiliary vector).
fn secure_mode() -> bool {
    std::fs::read("/proc/self/auxv").is_ok_and(|auxv| at_secure(&auxv))
}

/// `AT_SECURE` is set in `auxv` (native-endian pairs of 64-bit type and value).
fn at_secure(auxv: &[u8]) -> bool {
    const AT_SECURE: u64 = 23;
    let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
    auxv.chunks_exact(16)
        .any(|pair| word(&pair[..8]) == AT_SECURE && word(&pair[8..]) != 0)
}

fn kernel_mode_is_madvise() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|m| m.contains("[madvise]"))
}

/// Whether malloc marked its main heap for huge pages (`hg` in the `[heap]` mapping's flags:
/// it does so at its first growth once the tunable took); `None` without a heap mapping.
fn heap_is_marked() -> Option<bool> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut in_heap = false;
    let mut seen = None;
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if in_heap {
                let marked = flags.split_whitespace().any(|f| f == "hg");
                seen = Some(seen.unwrap_or(false) || marked);
            }
        } else if line.contains('-') && line.split_whitespace().nth(1).is_some_and(|p| p.len() == 4)
        {
            in_heap = line.ends_with("[heap]");
        }
    }
    seen
}

#[cfg(unix)]
fn exec_self(tunables: &str, execs: u32) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    // The program's own path, not /proc/self/exe, so its name (`ps`, `pidof`) stays its own.
    let exe = std::env::current_exe()?;
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    Err(cmd
        .args(args)
        .env(ENV, tunables)
        .env(REEXEC_MARK, format!("{execs};{tunables}"))
        .exec())
}

#[cfg(not(unix))]
fn exec_self(_: &str, _: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tunables_are_added_unless_the_operator_named_them() {
        let both = Some("glibc.malloc.hugetlb=1:glibc.malloc.arena_max=1".to_string());
        assert_eq!(tunables_with_thp(None, false), both);
        assert_eq!(tunables_with_thp(Some(""), false), both);
        assert_eq!(
            tunables_with_thp(Some("glibc.malloc.tcache_count=0"), false).as_deref(),
            Some("glibc.malloc.tcache_count=0:glibc.malloc.hugetlb=1:glibc.malloc.arena_max=1")
        );
        // The operator's arena count stays.
        assert_eq!(
            tunables_with_thp(Some("glibc.malloc.arena_max=4"), false).as_deref(),
            Some("glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1")
        );
        for chosen in [
            "glibc.malloc.hugetlb=0",
            "glibc.malloc.hugetlb=1",
            "glibc.malloc.hugetlb=2",
            "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0",
        ] {
            assert_eq!(tunables_with_thp(Some(chosen), false), None, "{chosen}");
        }
        // A tunable whose name only contains ours is another one.
        assert!(tunables_with_thp(Some("glibc.malloc.hugetlbx=0"), false).is_some());
        // So does an arena count given as MALLOC_ARENA_MAX.
        assert_eq!(
            tunables_with_thp(None, true).as_deref(),
            Some("glibc.malloc.hugetlb=1")
        );
    }

    #[test]
    fn secure_mode_is_read_from_the_auxiliary_vector() {
        let auxv = |pairs: &[(u64, u64)]| -> Vec<u8> {
            pairs
                .iter()
                .flat_map(|(t, v)| [t.to_ne_bytes(), v.to_ne_bytes()])
                .flatten()
                .collect()
        };
        assert!(at_secure(&auxv(&[(6, 4096), (23, 1), (0, 0)])));
        assert!(!at_secure(&auxv(&[(6, 4096), (23, 0), (0, 0)])));
        // The value 23 of another entry is not the type.
        assert!(!at_secure(&auxv(&[(6, 23), (0, 0)])));
        // `cargo test` runs without set-id bits or file capabilities.
        assert!(!secure_mode());
    }
}
