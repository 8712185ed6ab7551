//! vswitchd executes itself again with transparent huge pages for the heap
//! (`vswitch::heap_huge_pages`): same pid, the tunables in its environment, an operator's
//! choice left alone, and the flow tables really on huge pages. No root needed (no ports).

mod host_daemon;

use std::process::{Command, Stdio};

use host_daemon::{Daemon, VSWITCHD, wait_for};

/// Starts vswitchd with `GLIBC_TUNABLES` set to `tunables` (unset for `None`) and waits for
/// its pid file.
fn start(tag: &str, tunables: Option<&str>) -> Daemon {
    let rundir = host_daemon::rundir("vswitchd-thp", tag);
    let mut cmd = Command::new(VSWITCHD);
    cmd.arg("--rundir")
        .arg(&rundir)
        .arg("--pidfile")
        .arg(rundir.join("vswitchd.pid"))
        .arg("--fresh")
        .env_remove("GLIBC_TUNABLES")
        .env_remove("VSWITCH_HEAP_THP_REEXEC")
        .stderr(Stdio::null());
    if let Some(t) = tunables {
        cmd.env("GLIBC_TUNABLES", t);
    }
    let d = Daemon {
        child: cmd.spawn().expect("start vswitchd"),
        rundir,
    };
    assert!(
        wait_for(&d.rundir.join("vswitchd.pid"), true),
        "no pid file"
    );
    d
}

impl Daemon {
    /// `GLIBC_TUNABLES` as the running daemon was executed with (`None`: unset). glibc 2.36
    /// writes a NUL after each tunable's value in place, so the value is the entry and the
    /// `glibc.` pieces that follow it.
    fn tunables(&self) -> Option<String> {
        let environ = std::fs::read(format!("/proc/{}/environ", self.child.id())).unwrap();
        let mut entries = environ
            .split(|b| *b == 0)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .skip_while(|v| !v.starts_with("GLIBC_TUNABLES="));
        let mut value = entries.next()?.strip_prefix("GLIBC_TUNABLES=")?.to_string();
        for piece in entries.take_while(|v| v.starts_with("glibc.")) {
            value = format!("{value}:{piece}");
        }
        Some(value)
    }

    fn pid_file(&self) -> u32 {
        let text = std::fs::read_to_string(self.rundir.join("vswitchd.pid")).unwrap();
        text.trim().parse().unwrap()
    }

    /// A line of /proc/PID/smaps_rollup in kB (`Rss`, `AnonHugePages`).
    fn memory_kb(&self, field: &str) -> u64 {
        let rollup =
            std::fs::read_to_string(format!("/proc/{}/smaps_rollup", self.child.id())).unwrap();
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in smaps_rollup"))
    }

    fn ctl(&self, args: &[&str]) {
        let out = host_daemon::ctl(&self.rundir, args);
        assert!(
            out.status.success(),
            "vswitchctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Adds `n` flows of one mask (a classifier subtable of `n` rules).
    fn load_flows(&self, n: u32) {
        let file = self.rundir.join("flows.txt");
        let text: String = (0..n)
            .map(|i| {
                format!(
                    "priority=200,ip,nw_dst=10.{}.{}.{},actions=drop\n",
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                )
            })
            .collect();
        std::fs::write(&file, text).unwrap();
        self.ctl(&["add-br", "br0"]);
        self.ctl(&["add-flows", "br0", file.to_str().unwrap()]);
    }
}

#[test]
fn by_default_it_runs_again_with_the_tunables_under_the_same_pid() {
    let d = start("default", None);
    assert_eq!(
        d.tunables().as_deref(),
        Some("glibc.malloc.hugetlb=1:glibc.malloc.arena_max=1")
    );
    // exec, not a child: the pid we started is the daemon's, under its own name.
    assert_eq!(d.pid_file(), d.child.id());
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", d.child.id())).unwrap();
    assert_eq!(comm.trim(), "vswitchd");
}

#[test]
fn other_tunables_are_kept_and_the_operators_arena_count_wins() {
    let d = start(
        "others",
        Some("glibc.malloc.arena_max=4:glibc.malloc.tcache_count=0"),
    );
    assert_eq!(
        d.tunables().as_deref(),
        Some("glibc.malloc.arena_max=4:glibc.malloc.tcache_count=0:glibc.malloc.hugetlb=1")
    );
    assert_eq!(d.pid_file(), d.child.id());
}

#[test]
fn naming_the_tunable_opts_out() {
    let d = start("optout", Some("glibc.malloc.hugetlb=0"));
    assert_eq!(d.tunables().as_deref(), Some("glibc.malloc.hugetlb=0"));
}

/// The THP mode the kernel runs in (`always`, `madvise` or `never`).
fn thp_mode() -> Option<String> {
    let text = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    let start = text.find('[')? + 1;
    let end = text[start..].find(']')? + start;
    Some(text[start..end].to_string())
}

#[test]
fn the_flow_tables_live_on_huge_pages() {
    let mode = thp_mode();
    if mode.as_deref() == Some("never") || mode.is_none() {
        let why = format!("transparent huge pages are {mode:?} on this kernel");
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("skipped: {why}");
        return;
    }
    // 20k rules take ~50 MB of heap, grown by the control threads: with the heap's huge pages
    // most of that growth is huge (without arena_max=1 only a few MB would be: glibc leaves
    // per-thread arenas on 4 KiB pages).
    let d = start("loaded", None);
    let (rss0, huge0) = (d.memory_kb("Rss"), d.memory_kb("AnonHugePages"));
    d.load_flows(20_000);
    let grown = d.memory_kb("Rss").saturating_sub(rss0);
    let huge = d.memory_kb("AnonHugePages").saturating_sub(huge0);
    assert!(grown > 20_000, "the flows took only {grown} kB");
    assert!(
        huge * 4 >= grown,
        "of {grown} kB the flows took, {huge} kB are on huge pages"
    );
    if mode.as_deref() == Some("madvise") {
        // Nothing else asks for huge pages: the opt-out gets none.
        let off = start("loaded-off", Some("glibc.malloc.hugetlb=0"));
        off.load_flows(20_000);
        assert_eq!(
            off.memory_kb("AnonHugePages"),
            0,
            "huge pages without the tunable"
        );
    }
}
