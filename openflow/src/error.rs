//! OpenFlow 1.3 error types/codes and the codec's error value.
//!
//! Every decode failure maps to the `(type, code)` pair a switch must put in the `OFPT_ERROR`
//! it sends back (with the request's xid), so the server never has to guess.

use thiserror::Error;

/// `ofp_error_type` values (OpenFlow 1.3 §A.4.4).
pub mod ty {
    pub const HELLO_FAILED: u16 = 0;
    pub const BAD_REQUEST: u16 = 1;
    pub const BAD_ACTION: u16 = 2;
    pub const BAD_INSTRUCTION: u16 = 3;
    pub const BAD_MATCH: u16 = 4;
    pub const FLOW_MOD_FAILED: u16 = 5;
    pub const GROUP_MOD_FAILED: u16 = 6;
    pub const PORT_MOD_FAILED: u16 = 7;
    pub const TABLE_MOD_FAILED: u16 = 8;
    pub const QUEUE_OP_FAILED: u16 = 9;
    pub const SWITCH_CONFIG_FAILED: u16 = 10;
    pub const ROLE_REQUEST_FAILED: u16 = 11;
    pub const METER_MOD_FAILED: u16 = 12;
    pub const TABLE_FEATURES_FAILED: u16 = 13;
    pub const EXPERIMENTER: u16 = 0xffff;
}

/// Every `(type, code)` this codec (and the server on top of it) reports.
/// The discriminant order is irrelevant; [`ErrorCode::type_code`] gives the wire values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    HelloIncompatible,
    HelloEperm,
    BadRequestBadVersion,
    BadRequestBadType,
    BadRequestBadMultipart,
    BadRequestBadExperimenter,
    BadRequestBadExpType,
    BadRequestEperm,
    BadRequestBadLen,
    BadRequestBufferEmpty,
    BadRequestBufferUnknown,
    BadRequestBadTableId,
    BadRequestBadPort,
    BadRequestBadPacket,
    BadRequestMultipartBufferOverflow,
    BadActionBadType,
    BadActionBadLen,
    BadActionBadExperimenter,
    BadActionBadExpType,
    BadActionBadOutPort,
    BadActionBadArgument,
    BadActionEperm,
    BadActionTooMany,
    BadActionBadQueue,
    BadActionBadOutGroup,
    BadActionMatchInconsistent,
    BadActionUnsupportedOrder,
    BadActionBadTag,
    BadActionBadSetType,
    BadActionBadSetLen,
    BadActionBadSetArgument,
    BadInstructionUnknownInst,
    BadInstructionUnsupInst,
    BadInstructionBadTableId,
    BadInstructionUnsupMetadata,
    BadInstructionUnsupMetadataMask,
    BadInstructionBadExperimenter,
    BadInstructionBadExpType,
    BadInstructionBadLen,
    BadInstructionEperm,
    BadMatchBadType,
    BadMatchBadLen,
    BadMatchBadTag,
    BadMatchBadDlAddrMask,
    BadMatchBadNwAddrMask,
    BadMatchBadWildcards,
    BadMatchBadField,
    BadMatchBadValue,
    BadMatchBadMask,
    BadMatchBadPrereq,
    BadMatchDupField,
    BadMatchEperm,
    FlowModUnknown,
    FlowModTableFull,
    FlowModBadTableId,
    FlowModOverlap,
    FlowModEperm,
    FlowModBadTimeout,
    FlowModBadCommand,
    FlowModBadFlags,
    GroupModGroupExists,
    GroupModInvalidGroup,
    GroupModWeightUnsupported,
    GroupModOutOfGroups,
    GroupModOutOfBuckets,
    GroupModChainingUnsupported,
    GroupModWatchUnsupported,
    GroupModLoop,
    GroupModUnknownGroup,
    GroupModChainedGroup,
    GroupModBadType,
    GroupModBadCommand,
    GroupModBadBucket,
    GroupModBadWatch,
    GroupModEperm,
    PortModBadPort,
    PortModBadHwAddr,
    PortModBadConfig,
    PortModBadAdvertise,
    PortModEperm,
    SwitchConfigBadFlags,
    SwitchConfigBadLen,
    MeterModUnknown,
    MeterModMeterExists,
    MeterModInvalidMeter,
    MeterModUnknownMeter,
    MeterModBadCommand,
    MeterModBadFlags,
    MeterModBadRate,
    MeterModBadBurst,
    MeterModBadBand,
    MeterModBadBandValue,
    MeterModOutOfMeters,
    MeterModOutOfBands,
    TableFeaturesBadTable,
    TableFeaturesBadMetadata,
    TableFeaturesBadType,
    TableFeaturesBadLen,
    TableFeaturesBadArgument,
    TableFeaturesEperm,
    /// `NXBRC_MUST_BE_ZERO` (a Nicira experimenter error, vendor 0x2320, code 5 in OpenFlow
    /// 1.2+): a field that must be zero is not.
    NxBadRequestMustBeZero,
}

impl ErrorCode {
    /// The `(ofp_error_type, code)` pair for the wire.
    pub fn type_code(self) -> (u16, u16) {
        use ErrorCode::*;
        match self {
            HelloIncompatible => (ty::HELLO_FAILED, 0),
            HelloEperm => (ty::HELLO_FAILED, 1),
            BadRequestBadVersion => (ty::BAD_REQUEST, 0),
            BadRequestBadType => (ty::BAD_REQUEST, 1),
            BadRequestBadMultipart => (ty::BAD_REQUEST, 2),
            BadRequestBadExperimenter => (ty::BAD_REQUEST, 3),
            BadRequestBadExpType => (ty::BAD_REQUEST, 4),
            BadRequestEperm => (ty::BAD_REQUEST, 5),
            BadRequestBadLen => (ty::BAD_REQUEST, 6),
            BadRequestBufferEmpty => (ty::BAD_REQUEST, 7),
            BadRequestBufferUnknown => (ty::BAD_REQUEST, 8),
            BadRequestBadTableId => (ty::BAD_REQUEST, 9),
            BadRequestBadPort => (ty::BAD_REQUEST, 11),
            BadRequestBadPacket => (ty::BAD_REQUEST, 12),
            BadRequestMultipartBufferOverflow => (ty::BAD_REQUEST, 13),
            BadActionBadType => (ty::BAD_ACTION, 0),
            BadActionBadLen => (ty::BAD_ACTION, 1),
            BadActionBadExperimenter => (ty::BAD_ACTION, 2),
            BadActionBadExpType => (ty::BAD_ACTION, 3),
            BadActionBadOutPort => (ty::BAD_ACTION, 4),
            BadActionBadArgument => (ty::BAD_ACTION, 5),
            BadActionEperm => (ty::BAD_ACTION, 6),
            BadActionTooMany => (ty::BAD_ACTION, 7),
            BadActionBadQueue => (ty::BAD_ACTION, 8),
            BadActionBadOutGroup => (ty::BAD_ACTION, 9),
            BadActionMatchInconsistent => (ty::BAD_ACTION, 10),
            BadActionUnsupportedOrder => (ty::BAD_ACTION, 11),
            BadActionBadTag => (ty::BAD_ACTION, 12),
            BadActionBadSetType => (ty::BAD_ACTION, 13),
            BadActionBadSetLen => (ty::BAD_ACTION, 14),
            BadActionBadSetArgument => (ty::BAD_ACTION, 15),
            BadInstructionUnknownInst => (ty::BAD_INSTRUCTION, 0),
            BadInstructionUnsupInst => (ty::BAD_INSTRUCTION, 1),
            BadInstructionBadTableId => (ty::BAD_INSTRUCTION, 2),
            BadInstructionUnsupMetadata => (ty::BAD_INSTRUCTION, 3),
            BadInstructionUnsupMetadataMask => (ty::BAD_INSTRUCTION, 4),
            BadInstructionBadExperimenter => (ty::BAD_INSTRUCTION, 5),
            BadInstructionBadExpType => (ty::BAD_INSTRUCTION, 6),
            BadInstructionBadLen => (ty::BAD_INSTRUCTION, 7),
            BadInstructionEperm => (ty::BAD_INSTRUCTION, 8),
            BadMatchBadType => (ty::BAD_MATCH, 0),
            BadMatchBadLen => (ty::BAD_MATCH, 1),
            BadMatchBadTag => (ty::BAD_MATCH, 2),
            BadMatchBadDlAddrMask => (ty::BAD_MATCH, 3),
            BadMatchBadNwAddrMask => (ty::BAD_MATCH, 4),
            BadMatchBadWildcards => (ty::BAD_MATCH, 5),
            BadMatchBadField => (ty::BAD_MATCH, 6),
            BadMatchBadValue => (ty::BAD_MATCH, 7),
            BadMatchBadMask => (ty::BAD_MATCH, 8),
            BadMatchBadPrereq => (ty::BAD_MATCH, 9),
            BadMatchDupField => (ty::BAD_MATCH, 10),
            BadMatchEperm => (ty::BAD_MATCH, 11),
            FlowModUnknown => (ty::FLOW_MOD_FAILED, 0),
            FlowModTableFull => (ty::FLOW_MOD_FAILED, 1),
            FlowModBadTableId => (ty::FLOW_MOD_FAILED, 2),
            FlowModOverlap => (ty::FLOW_MOD_FAILED, 3),
            FlowModEperm => (ty::FLOW_MOD_FAILED, 4),
            FlowModBadTimeout => (ty::FLOW_MOD_FAILED, 5),
            FlowModBadCommand => (ty::FLOW_MOD_FAILED, 6),
            FlowModBadFlags => (ty::FLOW_MOD_FAILED, 7),
            GroupModGroupExists => (ty::GROUP_MOD_FAILED, 0),
            GroupModInvalidGroup => (ty::GROUP_MOD_FAILED, 1),
            GroupModWeightUnsupported => (ty::GROUP_MOD_FAILED, 2),
            GroupModOutOfGroups => (ty::GROUP_MOD_FAILED, 3),
            GroupModOutOfBuckets => (ty::GROUP_MOD_FAILED, 4),
            GroupModChainingUnsupported => (ty::GROUP_MOD_FAILED, 5),
            GroupModWatchUnsupported => (ty::GROUP_MOD_FAILED, 6),
            GroupModLoop => (ty::GROUP_MOD_FAILED, 7),
            GroupModUnknownGroup => (ty::GROUP_MOD_FAILED, 8),
            GroupModChainedGroup => (ty::GROUP_MOD_FAILED, 9),
            GroupModBadType => (ty::GROUP_MOD_FAILED, 10),
            GroupModBadCommand => (ty::GROUP_MOD_FAILED, 11),
            GroupModBadBucket => (ty::GROUP_MOD_FAILED, 12),
            GroupModBadWatch => (ty::GROUP_MOD_FAILED, 13),
            GroupModEperm => (ty::GROUP_MOD_FAILED, 14),
            PortModBadPort => (ty::PORT_MOD_FAILED, 0),
            PortModBadHwAddr => (ty::PORT_MOD_FAILED, 1),
            PortModBadConfig => (ty::PORT_MOD_FAILED, 2),
            PortModBadAdvertise => (ty::PORT_MOD_FAILED, 3),
            PortModEperm => (ty::PORT_MOD_FAILED, 4),
            SwitchConfigBadFlags => (ty::SWITCH_CONFIG_FAILED, 0),
            SwitchConfigBadLen => (ty::SWITCH_CONFIG_FAILED, 1),
            MeterModUnknown => (ty::METER_MOD_FAILED, 0),
            MeterModMeterExists => (ty::METER_MOD_FAILED, 1),
            MeterModInvalidMeter => (ty::METER_MOD_FAILED, 2),
            MeterModUnknownMeter => (ty::METER_MOD_FAILED, 3),
            MeterModBadCommand => (ty::METER_MOD_FAILED, 4),
            MeterModBadFlags => (ty::METER_MOD_FAILED, 5),
            MeterModBadRate => (ty::METER_MOD_FAILED, 6),
            MeterModBadBurst => (ty::METER_MOD_FAILED, 7),
            MeterModBadBand => (ty::METER_MOD_FAILED, 8),
            MeterModBadBandValue => (ty::METER_MOD_FAILED, 9),
            MeterModOutOfMeters => (ty::METER_MOD_FAILED, 10),
            MeterModOutOfBands => (ty::METER_MOD_FAILED, 11),
            TableFeaturesBadTable => (ty::TABLE_FEATURES_FAILED, 0),
            TableFeaturesBadMetadata => (ty::TABLE_FEATURES_FAILED, 1),
            TableFeaturesBadType => (ty::TABLE_FEATURES_FAILED, 2),
            TableFeaturesBadLen => (ty::TABLE_FEATURES_FAILED, 3),
            TableFeaturesBadArgument => (ty::TABLE_FEATURES_FAILED, 4),
            TableFeaturesEperm => (ty::TABLE_FEATURES_FAILED, 5),
            NxBadRequestMustBeZero => (ty::EXPERIMENTER, 5),
        }
    }
}

/// A codec error: what the peer did wrong, and the OpenFlow error to answer with.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{detail} ({code:?})")]
pub struct OfError {
    /// The OpenFlow `(type, code)` to report.
    pub code: ErrorCode,
    /// A human explanation (for logs; never sent on the wire).
    pub detail: String,
}

impl OfError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> OfError {
        OfError {
            code,
            detail: detail.into(),
        }
    }

    /// The `(ofp_error_type, code)` pair for the wire.
    pub fn type_code(&self) -> (u16, u16) {
        self.code.type_code()
    }
}

/// Shorthand used throughout the codec.
pub(crate) fn err<T>(code: ErrorCode, detail: impl Into<String>) -> Result<T, OfError> {
    Err(OfError::new(code, detail))
}
