//! What the binaries say about themselves, without a running switch: `vswitchctl --help`
//! (every command with its arguments), shell completions, man pages, `--format` parsing; and
//! the systemd readiness notification of `vswitchd`. No root needed.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

const VSWITCHD: &str = env!("CARGO_BIN_EXE_vswitchd");
const VSWITCHCTL: &str = env!("CARGO_BIN_EXE_vswitchctl");

fn run(bin: &str, args: &[&str]) -> std::process::Output {
    Command::new(bin)
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("run binary")
}

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn help_lists_every_command_with_its_arguments() {
    let o = run(VSWITCHCTL, &["--help"]);
    assert!(o.status.success());
    let help = text(&o);
    for want in [
        "add-br <BRIDGE> [--may-exist]",
        "del-br <BRIDGE> [--if-exists]",
        "add-port <BRIDGE> <PORT> [SETTINGS]... [--may-exist]",
        "dump-flows <SWITCH> [MATCH]",
        "dump-megaflows <BRIDGE>",
        "dump-conntrack [BRIDGE] [ZONE]",
        "show [SWITCH]",
        "completions <SHELL>",
        "--format <FORMAT>",
        "Exit status",
    ] {
        assert!(help.contains(want), "'{want}' not in --help:\n{help}");
    }
}

#[test]
fn completions_cover_the_commands_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let o = run(VSWITCHCTL, &["completions", shell]);
        assert!(o.status.success(), "{shell}");
        let script = text(&o);
        for cmd in ["add-br", "dump-megaflows", "dump-flows", "list-services"] {
            assert!(script.contains(cmd), "{shell} completion lacks {cmd}");
        }
    }
    // bash accepts the script it is given.
    let o = run(VSWITCHCTL, &["completions", "bash"]);
    let check = Command::new("bash")
        .args(["-n", "/dev/stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(&o.stdout)?;
            c.wait_with_output()
        })
        .expect("bash -n");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let bad = run(VSWITCHCTL, &["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn man_pages_are_generated_from_the_grammar() {
    let ctl = text(&run(VSWITCHCTL, &["man"]));
    assert!(
        ctl.starts_with(".ie") || ctl.contains(".TH vswitchctl"),
        "{ctl}"
    );
    assert!(ctl.contains("dump\\-megaflows") && ctl.contains("\\-\\-format"));
    let d = text(&run(VSWITCHD, &["--man"]));
    assert!(
        d.contains(".TH vswitchd") && d.contains("\\-\\-rundir"),
        "{d}"
    );
}

#[test]
fn a_bad_format_is_refused() {
    let o = run(VSWITCHCTL, &["list-br", "--format", "yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected text or json"));
}

/// `--format json` on a command that prints no JSON is refused (exit 1), `diff-flows` too.
#[test]
fn json_diff_flows_is_refused() {
    let dir = std::env::temp_dir().join(format!("vswitch-jsondiff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("a.txt"), dir.join("b.txt"));
    std::fs::write(&a, "priority=7,actions=drop\n").unwrap();
    std::fs::write(&b, "").unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let o = run(VSWITCHCTL, &["--format", "json", "diff-flows", a, b]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--format json is not available"));
    assert_eq!(
        run(VSWITCHCTL, &["diff-flows", a, b]).status.code(),
        Some(2)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A reader that goes away (`| head -1`) ends vswitchctl quietly: no panic, exit 0.
#[test]
fn a_closed_pipe_is_not_a_crash() {
    use std::io::Read;
    let dir = std::env::temp_dir().join(format!("vswitch-epipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("a.txt"), dir.join("b.txt"));
    // ~300 KiB of differences: more than a pipe holds.
    let flows: String = (0..5000)
        .map(|i| format!("priority={i},tcp,tp_dst={},actions=drop\n", i % 60000 + 1))
        .collect();
    std::fs::write(&a, flows).unwrap();
    std::fs::write(&b, "").unwrap();
    let mut child = Command::new(VSWITCHCTL)
        .args(["diff-flows", a.to_str().unwrap(), b.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The read end is closed here.
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An idle timeout that would overflow the clock is refused at start, not at the first client.
#[test]
fn an_endless_idle_timeout_is_refused() {
    let o = run(VSWITCHD, &["--ctl-idle-timeout", "18446744073709551615"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ctl-idle-timeout"));
}

/// vswitchd under a fake systemd: READY=1 once the management socket serves, STOPPING=1 on
/// SIGTERM.
#[test]
fn vswitchd_notifies_readiness_to_notify_socket() {
    let dir = std::env::temp_dir().join(format!("vswitch-sdnotify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind fake NOTIFY_SOCKET");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let rundir = dir.join("run");
    let mut child = Command::new(VSWITCHD)
        .arg("--rundir")
        .arg(&rundir)
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(Stdio::null())
        .spawn()
        .expect("start vswitchd");
    let mut buf = [0u8; 256];
    let got = sock.recv(&mut buf).map(|n| buf[..n].to_vec());
    let ready_then_serving =
        matches!(got.as_deref(), Ok(b"READY=1")) && rundir.join("vswitchd.ctl").exists();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopping = sock.recv(&mut buf).map(|n| buf[..n].to_vec());
    let status = child.wait().expect("wait vswitchd");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        ready_then_serving,
        "expected READY=1 with the socket up, got {got:?}"
    );
    assert_eq!(stopping.as_deref().ok(), Some(b"STOPPING=1".as_slice()));
    assert!(status.success());
}

/// The example configuration the package installs as /etc/vswitch/node.toml is valid.
#[test]
fn the_packaged_node_toml_is_a_valid_configuration() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/node.toml"
    ))
    .expect("packaging/node.toml");
    let cfg = vswitch::agent::validate::parse(&text).expect("packaging/node.toml validates");
    assert_eq!(cfg.name, "node1");
}
