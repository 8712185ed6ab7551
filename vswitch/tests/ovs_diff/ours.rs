//! Our switch for the differential suite: the `vswitchd` switch (datapath thread, caches,
//! conntrack, OpenFlow server) run in this process with in-memory ports, its OpenFlow socket
//! `<dir>/br0.mgmt` programmed by the real `ovs-ofctl` exactly like the Open vSwitch.

use std::path::PathBuf;
use std::sync::Arc;

use tap_io::Port;
use vswitch::control::Control;
use vswitch::switch::Switch;

use super::{Backend, Outputs};

pub struct Ours {
    switch: Arc<Switch>,
    control: Control,
    peers: Vec<tap_io::MemPort>,
    dir: PathBuf,
}

impl Ours {
    pub fn start(tag: &str, ports: u32) -> Ours {
        let dir = std::env::temp_dir().join(format!("ovsdiff-ours-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create rundir");
        let (dp, _threads) =
            vswitch::datapath::spawn(vswitch::datapath::Options::default()).expect("datapath");
        let switch = Arc::new(Switch::new(dp, dir.clone()));
        let server = vswitch::ctlserver::spawn(vswitch::ctlserver::Limits::default())
            .expect("control-plane server");
        switch.observe_bridges(Arc::new(vswitch::ofserver::Registry::new(&switch, server)));
        switch.add_br("br0").expect("add-br");
        let mut peers = Vec::new();
        for i in 1..=ports {
            let (ours, theirs) = tap_io::MemPort::pair(&format!("p{i}"), &format!("peer{i}"), 4096);
            let spec =
                vswitch::portspec::PortSpec::parse(&format!("p{i}"), &[format!("ofport={i}")])
                    .expect("port spec");
            switch
                .add_port_with_io("br0", spec, ours)
                .expect("add-port");
            peers.push(theirs);
        }
        switch.start_learning();
        let control = Control::new(switch.clone());
        Ours {
            switch,
            control,
            peers,
            dir,
        }
    }

    fn command(&self, args: &[&str]) -> Result<String, String> {
        self.control.command(args).map_err(|e| e.to_string())
    }
}

impl Backend for Ours {
    fn mgmt(&self) -> String {
        format!("unix:{}/br0.mgmt", self.dir.display())
    }

    fn reset_state(&mut self) -> Result<(), String> {
        self.command(&["flush-conntrack", "br0"])?;
        self.command(&["fdb-flush", "br0"]).map(|_| ())
    }

    fn settle_flows(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn send(&mut self, in_port: u32, frame: &[u8]) -> Result<(), String> {
        self.switch.inject("br0", in_port, frame)?;
        // Open vSwitch installs a learned flow before the next packet: so do we here.
        self.switch.settle_learning();
        Ok(())
    }

    fn collect(&mut self) -> Result<Outputs, String> {
        let mut out = Outputs::new();
        let mut batch = tap_io::Batch::new(64, 128, 9216);
        for (i, peer) in self.peers.iter_mut().enumerate() {
            let mut frames = Vec::new();
            loop {
                batch.clear();
                match peer.rx_batch(&mut batch) {
                    Ok(n) if n > 0 => frames.extend(batch.iter().map(|p| p.data().to_vec())),
                    _ => break,
                }
            }
            if !frames.is_empty() {
                out.insert(i as u32 + 1, frames);
            }
        }
        Ok(out)
    }

    fn conntrack(&mut self) -> Result<String, String> {
        self.command(&["dump-conntrack", "br0"])
    }

    fn set_port_vlan(&mut self, port: u32, settings: &[String]) -> Result<(), String> {
        let name = format!("p{port}");
        let mut args = vec!["set-port", "br0", &name];
        if settings.is_empty() {
            args.extend(["tag=", "trunks=", "vlan_mode="]);
        }
        args.extend(settings.iter().map(String::as_str));
        self.command(&args).map(|_| ())
    }

    fn samples(&mut self) -> Result<std::collections::BTreeMap<u32, u64>, String> {
        // `collector_set_id=C packets=N` lines.
        let text = self.command(&["dump-samples", "br0"])?;
        text.lines()
            .filter_map(|l| l.strip_prefix("collector_set_id="))
            .map(|l| {
                let (id, n) = l
                    .split_once(" packets=")
                    .ok_or_else(|| format!("bad dump-samples line {l:?}"))?;
                Ok((
                    id.parse().map_err(|_| format!("bad id in {l:?}"))?,
                    n.parse().map_err(|_| format!("bad count in {l:?}"))?,
                ))
            })
            .collect()
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        self.switch.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
