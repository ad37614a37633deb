//! The Modbus source (DESIGN §7): device models (register maps), endpoints (TCP, RTU on a
//! serial line, RTU over TCP), poll planning, and the poller that turns responses into the same
//! `Reading`s the MQTT source produces.
//!
//! - `map`: where a signal lives and how raw words become a value (and back, for writes);
//! - `plan`: merging registers into few requests;
//! - `endpoint`: endpoint URLs and connecting;
//! - `poller`: one task per endpoint, serialising its requests, isolating slow devices.

pub mod endpoint;
pub mod map;
pub mod plan;
pub mod poller;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use endpoint::{EndpointKind, Parity};
use map::Register;
use plan::{Limits, ReadRequest};

use crate::model::DeviceIdx;

/// A device model: its register map and the poll plan computed from it.
#[derive(Debug, Clone)]
pub struct DeviceModel {
    pub name: String,
    pub category: String,
    pub registers: Vec<Register>,
    pub limits: Limits,
    pub plan: Vec<ReadRequest>,
}

impl DeviceModel {
    pub fn new(name: String, category: String, registers: Vec<Register>, limits: Limits) -> Self {
        let plan = plan::plan(&registers, limits);
        DeviceModel {
            name,
            category,
            registers,
            limits,
            plan,
        }
    }

    /// The register of a signal, if the model maps it.
    pub fn register(&self, signal: &str) -> Option<&Register> {
        self.registers.iter().find(|r| r.signal == signal)
    }
}

/// One Modbus endpoint: a TCP server, a serial line, or a serial server carrying RTU over TCP.
/// Many devices (unit ids) share one endpoint; its requests are serialised.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub name: String,
    /// As configured, for logs.
    pub url: String,
    pub kind: EndpointKind,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Extra attempts of a request that timed out or failed in transport.
    pub retries: u32,
    /// Quiet time between two requests on this endpoint (slow serial devices need it).
    pub pause_between_requests: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
}

/// A device's Modbus binding.
#[derive(Debug, Clone)]
pub struct Binding {
    /// Index into `ModbusSettings::endpoints`.
    pub endpoint: usize,
    /// Unit id (slave address), 1..=247 (0 is broadcast; 255 is common for TCP-only devices).
    pub unit: u8,
    pub model: Arc<DeviceModel>,
}

/// The `[modbus]` section, built, with the bindings of the devices that are polled.
#[derive(Debug, Clone, Default)]
pub struct ModbusSettings {
    pub endpoints: Vec<Endpoint>,
    /// Consecutive failed polls before a device is reported offline.
    pub offline_after: u32,
    /// Each polled device's binding, by its index in the inventory (`Device::polled` is set
    /// for exactly these devices).
    pub bindings: BTreeMap<DeviceIdx, Binding>,
}

impl ModbusSettings {
    /// The binding of a device; `None` for a device that is not polled over Modbus.
    pub fn binding(&self, device: DeviceIdx) -> Option<&Binding> {
        self.bindings.get(&device)
    }
}
