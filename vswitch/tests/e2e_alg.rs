//! FTP and TFTP through vswitchd's ALGs, with Antrea-style flows: the control connection is
//! committed with `ct(commit,alg=ftp|tftp)`, related (`+rel`) connections are committed and
//! allowed, every other new connection is dropped. Real clients and servers (python3's ftplib
//! and a minimal FTP server, a TFTP exchange over UDP sockets) in pod namespaces: passive
//! (`PASV`, `EPSV`) and active (`PORT`) FTP and a TFTP read, pod to pod and to a service
//! address DNATed to the server pod (the `227` reply's address rewritten, the TCP sequence
//! numbers shifted). Without the ALG the same transfers fail. Root only.

mod common;

use std::time::Duration;

use common::*;

const BR: &str = "br0";
const CLIENT: &str = "10.41.0.1";
const SERVER: &str = "10.41.0.2";
const VIP: &str = "10.41.0.100";
const SERVER_MAC: &str = "02:00:00:00:41:02";
/// The port the test FTP server announces for passive transfers.
const PASV_PORT: u16 = 30000;
/// Bytes the FTP server sends per transfer.
const FILE_LEN: usize = 18 * 400 + 4;

/// A minimal FTP server: USER, PASS, TYPE, PASV, EPSV, PORT, EPRT, RETR, QUIT; serves `N`
/// control connections and exits. Active transfers connect from port 20.
const FTPD: &str = r#"
import socket, sys
host, port, pasv_port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
content = b"alg-test-payload: " * 400 + b"end\n"
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((host, port))
ls.listen(4)
ls.settimeout(60)
for _ in range(n):
    c, _ = ls.accept()
    c.settimeout(20)
    f = c.makefile("rb")
    say = lambda s: c.sendall(s.encode() + b"\r\n")
    say("220 alg test server")
    target, pasv = None, None
    while True:
        line = f.readline()
        if not line:
            break
        cmd = line.decode().strip()
        verb, _, arg = cmd.partition(" ")
        verb = verb.upper()
        if verb == "USER":
            say("331 password please")
        elif verb in ("PASS", "TYPE"):
            say("230 ok" if verb == "PASS" else "200 ok")
        elif verb in ("PASV", "EPSV"):
            pasv = socket.socket()
            pasv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            pasv.bind((host, pasv_port))
            pasv.listen(1)
            pasv.settimeout(10)
            if verb == "PASV":
                h = host.replace(".", ",")
                say(f"227 Entering Passive Mode ({h},{pasv_port >> 8},{pasv_port & 255}).")
            else:
                say(f"229 Entering Extended Passive Mode (|||{pasv_port}|)")
        elif verb == "PORT":
            p = arg.split(",")
            target = (".".join(p[:4]), int(p[4]) * 256 + int(p[5]))
            say("200 ok")
        elif verb == "EPRT":
            p = arg.split(arg[0])
            target = (p[2], int(p[3]))
            say("200 ok")
        elif verb == "RETR":
            say("150 sending")
            if pasv is not None:
                d, _ = pasv.accept()
                pasv.close()
                pasv = None
            else:
                d = socket.socket()
                d.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                d.bind((host, 20))
                d.settimeout(10)
                d.connect(target)
            d.sendall(content)
            d.close()
            say("226 done")
        elif verb == "QUIT":
            say("221 bye")
            break
        else:
            say("502 not implemented")
    c.close()
"#;

/// An FTP client: logs in, fetches one file in MODE (pasv, epsv, port), prints its length.
/// It trusts the `227` reply's address, so an unrewritten private address fails behind NAT.
const FTPC: &str = r#"
import ftplib, io, socket, sys
host, mode, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
ftp = ftplib.FTP(timeout=timeout)
ftp.trust_server_pasv_ipv4_address = True
ftp.connect(host, 21)
ftp.login("anonymous", "alg@test")
buf = io.BytesIO()
if mode == "epsv":
    _, port = ftplib.parse229(ftp.sendcmd("EPSV"), ftp.sock.getpeername())
    d = socket.create_connection((host, port), timeout=timeout)
    ftp.sendcmd("RETR file")
    while True:
        b = d.recv(65536)
        if not b:
            break
        buf.write(b)
    d.close()
    ftp.voidresp()
else:
    ftp.set_pasv(mode == "pasv")
    ftp.retrbinary("RETR file", buf.write)
# More commands after the transfer: the control connection must survive the rewrite.
ftp.sendcmd("TYPE I")
ftp.quit()
print(len(buf.getvalue()))
"#;

/// A TFTP server answering `N` read requests on port 69, each from a new port, with one
/// short DATA block, and waiting for its ACK.
const TFTPD: &str = r#"
import socket, sys
host, n = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((host, 69))
s.settimeout(60)
for _ in range(n):
    req, peer = s.recvfrom(2048)
    if req[:2] != b"\x00\x01":
        continue
    t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t.bind((host, 0))
    t.settimeout(10)
    t.sendto(b"\x00\x03\x00\x01tftp-alg-block", peer)
    ack, _ = t.recvfrom(100)
    print("acked" if ack[:4] == b"\x00\x04\x00\x01" else "bad ack", flush=True)
"#;

/// A TFTP read: prints the block and the port it came from.
const TFTPC: &str = r#"
import socket, sys
host, timeout = sys.argv[1], float(sys.argv[2])
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.settimeout(timeout)
c.sendto(b"\x00\x01file\x00octet\x00", (host, 69))
data, peer = c.recvfrom(2048)
assert data[:4] == b"\x00\x03\x00\x01", data
c.sendto(b"\x00\x04\x00\x01", peer)
print(data[4:].decode(), peer[1])
"#;

struct Bench {
    node: Node,
    client: usize,
    server: usize,
    scripts: Vec<std::path::PathBuf>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        for s in &self.scripts {
            let _ = std::fs::remove_file(s);
        }
    }
}

impl Bench {
    fn new(tag: &str) -> Bench {
        let mut node = Node::new(tag);
        node.start_switch(BR);
        let client = node.add_veth_pod(
            &format!("{tag}c"),
            &format!("{tag}c"),
            &format!("{CLIENT}/24"),
            "02:00:00:00:41:01",
        );
        let server = node.add_veth_pod(
            &format!("{tag}s"),
            &format!("{tag}s"),
            &format!("{SERVER}/24"),
            SERVER_MAC,
        );
        let d = node.daemon();
        d.ctl(&["add-port", BR, &format!("{tag}c"), "ofport=1"]);
        d.ctl(&["add-port", BR, &format!("{tag}s"), "ofport=2"]);
        // The service address is the server's MAC on the client's link (kube-proxy-less).
        ns_sh(
            node.pod(client).name(),
            &format!("ip neigh replace {VIP} lladdr {SERVER_MAC} dev eth0 nud permanent"),
        );
        let scripts = [
            ("ftpd.py", FTPD),
            ("ftpc.py", FTPC),
            ("tftpd.py", TFTPD),
            ("tftpc.py", TFTPC),
        ]
        .iter()
        .map(|(n, t)| temp_script(&format!("{tag}-{n}"), t))
        .collect();
        Bench {
            node,
            client,
            server,
            scripts,
        }
    }

    fn script(&self, i: usize) -> String {
        self.scripts[i].display().to_string()
    }

    /// Antrea-style flows; `alg` adds `alg=..` to the control connections' commits, `nat`
    /// DNATs the service address to the server.
    fn flows(&self, alg: bool, nat: bool) {
        let d = self.node.daemon();
        d.ctl(&["del-flows", BR]);
        let (ftp, tftp) = if alg {
            (",alg=ftp", ",alg=tftp")
        } else {
            ("", "")
        };
        let (dst, n, to) = if nat {
            (VIP, ",nat", format!(",nat(dst={SERVER})"))
        } else {
            (SERVER, "", String::new())
        };
        let flows = format!(
            "table=0,priority=100,arp,in_port=1,actions=output:2
table=0,priority=100,arp,in_port=2,actions=output:1
table=0,priority=10,ip,actions=ct(table=1,zone=5{n})
table=1,priority=100,ct_state=+trk+new-rel,tcp,nw_dst={dst},tp_dst=21,actions=ct(commit,zone=5{ftp}{to}),resubmit(,2)
table=1,priority=100,ct_state=+trk+new-rel,udp,nw_dst={dst},tp_dst=69,actions=ct(commit,zone=5{tftp}{to}),resubmit(,2)
table=1,priority=90,ct_state=+trk+new+rel,ip,actions=ct(commit,zone=5{n}),resubmit(,2)
table=1,priority=80,ct_state=+trk+est,ip,actions=resubmit(,2)
table=1,priority=0,actions=drop
table=2,in_port=1,actions=output:2
table=2,in_port=2,actions=output:1
"
        );
        let path = temp_script("alg-flows", &flows);
        d.ctl(&["replace-flows", BR, &path.display().to_string()]);
        let _ = std::fs::remove_file(path);
        d.ctl(&["flush-conntrack", BR]);
    }

    fn client_ns(&self) -> &str {
        self.node.pod(self.client).name()
    }

    fn server_ns(&self) -> &str {
        self.node.pod(self.server).name()
    }

    /// One FTP transfer to `host` in `mode`: the bytes received, `None` when it failed.
    fn ftp(&self, host: &str, mode: &str, timeout_s: u32) -> Option<usize> {
        let server = Spawned::start(
            self.server_ns(),
            "ftpd",
            &[
                "timeout",
                "40",
                "python3",
                &self.script(0),
                SERVER,
                "21",
                &PASV_PORT.to_string(),
                "1",
            ],
        );
        wait_listening(self.server_ns(), "tcp", 21);
        let r = ns_run(
            self.client_ns(),
            &[
                "python3",
                &self.script(1),
                host,
                mode,
                &timeout_s.to_string(),
            ],
            Duration::from_secs(u64::from(timeout_s) * 3 + 5),
        );
        drop(server);
        if !r.ok {
            eprintln!("ftp {mode} to {host}: {}{}", r.stdout, r.stderr);
            return None;
        }
        r.stdout.trim().parse().ok()
    }

    /// One TFTP read from `host`: (block text, the server port it came from).
    fn tftp(&self, host: &str, timeout_s: u32) -> Option<(String, u16)> {
        let server = Spawned::start(
            self.server_ns(),
            "tftpd",
            &["timeout", "30", "python3", &self.script(2), SERVER, "1"],
        );
        wait_listening(self.server_ns(), "udp", 69);
        let r = ns_run(
            self.client_ns(),
            &["python3", &self.script(3), host, &timeout_s.to_string()],
            Duration::from_secs(u64::from(timeout_s) + 5),
        );
        // The server prints once the client's ACK reached it through the switch.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while r.ok && !server.output().contains("acked") && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let acked = server.output().contains("acked");
        drop(server);
        if !r.ok || !acked {
            eprintln!("tftp from {host}: {}{} acked={acked}", r.stdout, r.stderr);
            return None;
        }
        let (text, port) = r.stdout.trim().rsplit_once(' ')?;
        Some((text.to_string(), port.parse().ok()?))
    }

    /// A TCP connection from the client to a listening port nobody announced.
    fn unannounced_connects(&self, host: &str) -> bool {
        let _listener = Spawned::start(
            self.server_ns(),
            "listen",
            &[
                "timeout",
                "20",
                "socat",
                "TCP-LISTEN:31000,reuseaddr",
                "SYSTEM:true",
            ],
        );
        wait_listening(self.server_ns(), "tcp", 31000);
        ns_run(
            self.client_ns(),
            &["nc", "-z", "-n", "-w", "2", host, "31000"],
            Duration::from_secs(6),
        )
        .ok
    }

    fn conntrack(&self) -> String {
        self.node.daemon().ctl(&["dump-conntrack", BR])
    }
}

#[test]
fn ftp_and_tftp_pod_to_pod_through_the_alg() {
    if !require_root("ftp_and_tftp_pod_to_pod_through_the_alg") {
        return;
    }
    let b = Bench::new("alga");
    // Without the ALG the data connections are new connections, and dropped.
    b.flows(false, false);
    assert_eq!(
        b.ftp(SERVER, "pasv", 3),
        None,
        "passive FTP without the ALG"
    );
    assert_eq!(b.tftp(SERVER, 2), None, "TFTP without the ALG");

    b.flows(true, false);
    for mode in ["pasv", "epsv", "port"] {
        assert_eq!(b.ftp(SERVER, mode, 10), Some(FILE_LEN), "FTP {mode}");
    }
    let (text, port) = b.tftp(SERVER, 5).expect("TFTP through the ALG");
    assert_eq!(text, "tftp-alg-block");
    assert_ne!(port, 69, "the answer comes from another port");
    assert!(
        !b.unannounced_connects(SERVER),
        "a new connection nobody announced passed"
    );

    let ct = b.conntrack();
    assert!(
        ct.lines()
            .any(|l| l.contains("dport=21)") && l.contains("helper=ftp")),
        "{ct}"
    );
    assert!(
        ct.lines()
            .any(|l| l.contains("dport=69)") && l.contains("helper=tftp")),
        "{ct}"
    );
    // The data connections are tracked too (the passive one to the announced port).
    assert!(
        ct.lines()
            .any(|l| l.starts_with("tcp,") && l.contains(&format!("dport={PASV_PORT})"))),
        "{ct}"
    );
    let d = b.node.daemon.as_ref().expect("daemon");
    assert_eq!(d.drops(BR, "malformed"), 0);
}

#[test]
fn ftp_and_tftp_to_a_dnat_service_are_translated() {
    if !require_root("ftp_and_tftp_to_a_dnat_service_are_translated") {
        return;
    }
    let b = Bench::new("algn");
    b.flows(true, true);
    // Passive: the server's 227 names its own address; the client (trusting it) must read the
    // service address, two characters longer, and the control connection goes on.
    for mode in ["pasv", "epsv", "port"] {
        assert_eq!(
            b.ftp(VIP, mode, 10),
            Some(FILE_LEN),
            "FTP {mode} via the service"
        );
    }
    let (text, port) = b.tftp(VIP, 5).expect("TFTP via the service");
    assert_eq!(text, "tftp-alg-block");
    assert_ne!(port, 69);
    assert!(!b.unannounced_connects(VIP));
    let ct = b.conntrack();
    assert!(
        ct.lines().any(|l| l.contains(&format!("dst={VIP},sport="))
            && l.contains(&format!("reply=(src={SERVER},"))
            && l.contains(&format!("dport={PASV_PORT})"))),
        "the passive data connection is DNATed like its control connection:\n{ct}"
    );
}
