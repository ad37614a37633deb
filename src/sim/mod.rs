//! The estate simulator (issue 3 item 8, DESIGN §8): serves the Modbus devices of a gateway
//! configuration as Modbus slaves — on every `[[modbus.endpoints]]` entry, a Modbus TCP server
//! (`tcp://`), RTU framing over TCP (`rtu+tcp://`) or an RTU server on a serial line (`rtu://`)
//! — with values that move realistically and faults that can be injected from tests (a Rust
//! API) or scheduled by a script file (`estate-gateway simulate --script faults.toml`). The
//! demo and the benchmarks run the gateway against it; the tests use it as the in-process peer
//! of the poller.
//!
//! - `values`: how each signal moves (seeded, clock-free: `step(dt)`);
//! - `memory`: a device's four Modbus tables, and values ↔ words through the gateway's own
//!   register codec;
//! - `fault`: the faults and the script format;
//! - `simulator`: the state (devices, faults, simulated time) and the answer to one request;
//! - `server`: the listeners, connections, counters and the ticker (`Simulator::start`,
//!   `SimHandle`).
//!
//! ```no_run
//! # async fn demo(cfg: &estate_gateway::config::Config) -> Result<(), estate_gateway::sim::SimError> {
//! use estate_gateway::model::Value;
//! use estate_gateway::sim::{Fault, Simulator};
//! let sim = Simulator::start(cfg, 42).await?;
//! sim.set_value("HX-1", "supply_setpoint_c", Value::Float(50.0))?;
//! sim.set_fault("FP-1", Fault::NoResponse)?;
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod fault;
mod memory;
mod server;
mod simulator;
mod values;

use std::io;

pub use fault::{exception_name, load_script, parse_script, Fault, ScriptErrors, ScriptedFault};
pub use memory::ADDRESS_MARGIN;
pub use server::{EndpointStats, SimHandle, SimOptions, Transport, DEFAULT_TICK};
pub use simulator::{DeviceSpec, EndpointSpec, Framing, Reply, Simulator};
pub use values::{coerce, DeviceValues};

/// What the simulator refuses, each naming what would be valid.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("no simulated device `{device}`; served: {served}")]
    UnknownDevice { device: String, served: String },
    #[error("device `{device}` (model `{model}`) has no register for signal `{signal}`; it maps: {known}")]
    UnknownSignal {
        device: String,
        model: String,
        signal: String,
        known: String,
    },
    #[error("`{value}` is not a valid value of `{signal}` of device `{device}`: {reason}")]
    BadValue {
        device: String,
        signal: String,
        value: String,
        reason: String,
    },
    #[error("{table} {address} (+{count}) of device `{device}` ({size} addresses): {reason}")]
    Address {
        device: String,
        table: &'static str,
        address: u16,
        count: usize,
        size: usize,
        reason: String,
    },
    #[error("{0}")]
    Script(ScriptErrors),
    #[error("cannot serve endpoint `{endpoint}` ({url}): {source}")]
    Bind {
        endpoint: String,
        url: String,
        source: io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}
