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

/// `vswitchctl completions bash | head -1`, `vswitchctl man | head`: a reader that is gone
/// before (or while) they write drops the rest; exit 0, nothing on stderr (no clap_complete
/// panic, no "Broken pipe").
#[test]
fn completions_and_man_end_quietly_when_the_reader_is_gone() {
    for args in [
        &["completions", "bash"][..],
        &["completions", "zsh"][..],
        &["completions", "fish"][..],
        &["man"][..],
    ] {
        // A pipe whose read end is closed: every write fails with EPIPE.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(VSWITCHCTL)
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("run vswitchctl");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

/// `vswitchctl COMMAND --help` (or `-h`, before or after the switch) explains the command and
/// exits 0 for every command, OpenFlow ones (`show`, `dump-flows`, ...) and local ones
/// included: none takes `--help` for a switch name. No daemon is needed.
#[test]
fn every_command_answers_help() {
    let rundir = std::env::temp_dir().join(format!("vswitch-nohelp-{}", std::process::id()));
    let rundir = rundir.to_str().unwrap();
    let mut names: Vec<String> = vswitch::ofclient::commands::COMMANDS
        .iter()
        .map(|c| c.to_string())
        .collect();
    names.extend(
        vswitch::command::MgmtCommand::clap_commands()
            .iter()
            .map(|c| c.get_name().to_string()),
    );
    names.extend(["completions".to_string(), "man".to_string()]);
    for name in &names {
        let mut forms = vec![vec![name.as_str(), "--help"], vec![name.as_str(), "-h"]];
        // After the switch too (clap refuses an argument a management command lacks).
        if vswitch::ofclient::commands::COMMANDS.contains(&name.as_str()) {
            forms.push(vec![name.as_str(), "br0", "--help"]);
        }
        for args in forms {
            let mut full = vec!["--rundir", rundir];
            full.extend(&args);
            let o = run(VSWITCHCTL, &full);
            let (out, err) = (text(&o), String::from_utf8_lossy(&o.stderr).into_owned());
            assert_eq!(o.status.code(), Some(0), "{args:?}: {out}{err}");
            assert!(
                out.contains(&format!("Usage: {name}")) && err.is_empty(),
                "{args:?}: {out}{err}"
            );
        }
    }
    // The OpenFlow `show` explains its optional switch.
    let show = text(&run(VSWITCHCTL, &["--rundir", rundir, "show", "--help"]));
    assert!(show.contains("Usage: show [SWITCH]"), "{show}");
}

/// A global flag clap does not know, in front of the command, exits 2 (clap's usage error),
/// not 1 as if it were a command.
#[test]
fn an_unknown_global_flag_exits_2() {
    for args in [
        &["--bogus-flag", "list-br"][..],
        &["-x", "list-br"][..],
        &["--format", "yaml", "list-br"][..],
    ] {
        let o = run(VSWITCHCTL, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
    let err =
        String::from_utf8_lossy(&run(VSWITCHCTL, &["--bogus-flag", "list-br"]).stderr).into_owned();
    assert!(err.contains("unexpected argument '--bogus-flag'"), "{err}");
}

/// Known flags before the command (`--names`, `--no-names`, `--strict`) and arguments that
/// start with `-` after it (`add-flows BR -` for stdin, `cookie=5/-1`, `--strict`, `--bundle`)
/// reach the command: with no switch to talk to it fails to connect (exit 1), never with a
/// usage error (exit 2).
#[test]
fn flags_and_hyphen_arguments_reach_the_command() {
    for args in [
        &["--no-names", "dump-flows", "br0"][..],
        &["--names", "--no-names", "dump-flows", "br0"][..],
        &["--strict", "del-flows", "br0", "priority=0"][..],
        &["del-flows", "br0", "priority=0", "--strict"][..],
        &["dump-flows", "br0", "cookie=5/-1"][..],
        &["add-flow", "br0", "actions=drop", "--bundle"][..],
    ] {
        let mut all = vec!["--rundir", "/nonexistent"];
        all.extend_from_slice(args);
        let o = run(VSWITCHCTL, &all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("cannot connect"), "{args:?}: {err}");
    }
}

/// `mod-port ... no-flood` (an OpenFlow 1.0 bit) is refused with one readable sentence,
/// before any connection.
#[test]
fn mod_port_of10_settings_are_refused_in_one_sentence() {
    let o = run(
        VSWITCHCTL,
        &[
            "--rundir",
            "/nonexistent",
            "mod-port",
            "br0",
            "1",
            "no-flood",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "vswitchctl: mod-port no-flood: OpenFlow 1.3 has no such port setting (OpenFlow 1.0 \
         only); vswitch ports support up, down, receive, no-receive, forward, no-forward\n"
    );
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
    // A socket with a receive timeout is not restarted after a signal (signal(7)): another
    // test's child exiting may interrupt the wait.
    let recv = |buf: &mut [u8]| loop {
        match sock.recv(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => break r.map(|n| buf[..n].to_vec()),
        }
    };
    let got = recv(&mut buf);
    let ready_then_serving =
        matches!(got.as_deref(), Ok(b"READY=1")) && rundir.join("vswitchd.ctl").exists();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopping = recv(&mut buf);
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
