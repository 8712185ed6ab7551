//! Metric families as plain data, and their Prometheus text encoding (through the
//! `prometheus-client` crate, as a collector that yields what a scrape gathered).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Every metric name starts with this (and `_`).
pub const PREFIX: &str = "vswitch";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; the encoding appends `_total` to the name.
    Counter,
    Gauge,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

pub type Labels = Vec<(&'static str, String)>;

/// One metric family: a name (without prefix, with its unit; counters without `_total`),
/// its help, and its samples.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<(Labels, Value)>,
}

impl Family {
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    pub fn add(&mut self, labels: Labels, v: u64) {
        self.samples.push((labels, Value::Int(v)));
    }

    pub fn add_f64(&mut self, labels: Labels, v: f64) {
        self.samples.push((labels, Value::Float(v)));
    }
}

#[derive(Debug)]
struct Gathered(Vec<Family>);

impl Collector for Gathered {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let ty = match f.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
            };
            let mut family = encoder.encode_descriptor(f.name, f.help, None, ty)?;
            for (labels, value) in &f.samples {
                let m = family.encode_family(labels)?;
                match (f.kind, *value) {
                    (Kind::Counter, Value::Int(v)) => ConstCounter::new(v).encode(m)?,
                    (Kind::Counter, Value::Float(v)) => ConstCounter::new(v).encode(m)?,
                    (Kind::Gauge, Value::Int(v)) => ConstGauge::new(v).encode(m)?,
                    (Kind::Gauge, Value::Float(v)) => ConstGauge::new(v).encode(m)?,
                }
            }
        }
        Ok(())
    }
}

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The families in the Prometheus text format (0.0.4), names prefixed with [`PREFIX`].
pub fn encode(families: Vec<Family>) -> String {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(Gathered(families)));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_get_total_and_labels_are_escaped() {
        let mut c = Family::new("port_receive_packets", Kind::Counter, "Frames received.");
        c.add(vec![("bridge", "br0".into()), ("port", "p\"1".into())], 7);
        let mut g = Family::new("build_info", Kind::Gauge, "Build.");
        g.add(vec![], 1);
        let text = encode(vec![c, g]);
        assert!(
            text.contains("# TYPE vswitch_port_receive_packets_total counter"),
            "{text}"
        );
        assert!(
            text.contains(r#"vswitch_port_receive_packets_total{bridge="br0",port="p\"1"} 7"#),
            "{text}"
        );
        assert!(text.contains("vswitch_build_info 1"), "{text}");
    }
}
