//! CNI errors: a code, a message and details, printed as the spec's error JSON on stdout.

use std::fmt;

/// Well-known codes of the CNI specification (1.0.0, 1.1.0) and this plugin's own (100+).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration (the message names it and its value).
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Invalid necessary environment variables (`CNI_COMMAND`, `CNI_CONTAINERID`, ...).
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure (e.g. reading stdin).
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content (stdin is not JSON).
    pub const DECODE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later: vswitchd is not running (yet).
    pub const TRY_AGAIN: u32 = 11;
    /// STATUS: the plugin cannot serve ADD requests.
    pub const NOT_AVAILABLE: u32 = 50;
    /// Creating or configuring an interface failed (`ip`, `nsenter`).
    pub const LINK: u32 = 100;
    /// vswitchd refused a request (its message is the error's message).
    pub const SWITCH: u32 = 101;
    /// The IPAM plugin could not be run or gave no usable IPv4 address.
    pub const IPAM: u32 = 102;
    /// CHECK: the container's networking is not as `prevResult` and vswitchd say.
    pub const CHECK_FAILED: u32 = 103;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The spec's error object for output version `version`.
    pub fn to_json(&self, version: &str) -> serde_json::Value {
        let mut v = serde_json::json!({
            "cniVersion": version,
            "code": self.code,
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            v["details"] = self.details.clone().into();
        }
        v
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "code {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

pub type Result<T> = std::result::Result<T, CniError>;
