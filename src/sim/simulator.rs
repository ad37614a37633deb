//! The simulator's state, free of I/O and of clocks: the simulated devices (each with its
//! signal values, register memory and faults), the endpoints they sit on, simulated time, and
//! the answer to one Modbus request. `step(dt)` advances simulated time; `handle` answers a
//! request as the addressed unit would. The network side (`super::server`) feeds requests in
//! and a ticker calls `step`; tests can drive it directly, exactly and without sockets.
//!
//! Units that are not configured on an endpoint get no answer on RTU framings (`rtu://`,
//! `rtu+tcp://`), as on a real bus where no slave has that address; on Modbus TCP (`tcp://`)
//! they get the exception `GatewayTargetDevice` (0x0B), which is what a Modbus TCP gateway in
//! front of a serial bus answers for a unit that is not there.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_modbus::{ExceptionCode, Request, Response};

use super::fault::{Fault, ScriptErrors, ScriptedFault};
use super::memory::{overlaps, Memory};
use super::values::{coerce, DeviceValues};
use super::SimError;
use crate::config::Config;
use crate::model::{SignalType, Value};
use crate::source::modbus::map::Table;
use crate::source::modbus::{DeviceModel, EndpointKind};

/// How an endpoint frames requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Modbus TCP (MBAP header) on a TCP listener.
    Tcp,
    /// RTU frames (with CRC) on a TCP listener, like a serial device server.
    RtuOverTcp,
    /// RTU on a serial line.
    Rtu,
}

impl Framing {
    /// The framing of a configured endpoint.
    pub fn of(kind: &EndpointKind) -> Framing {
        match kind {
            EndpointKind::Tcp { .. } => Framing::Tcp,
            EndpointKind::RtuOverTcp { .. } => Framing::RtuOverTcp,
            EndpointKind::Rtu { .. } => Framing::Rtu,
        }
    }

    /// For people: `Modbus TCP`, `RTU over TCP`, `RTU`.
    pub fn label(self) -> &'static str {
        match self {
            Framing::Tcp => "Modbus TCP",
            Framing::RtuOverTcp => "RTU over TCP",
            Framing::Rtu => "RTU",
        }
    }
}

/// One endpoint the simulator serves.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    pub name: String,
    /// As configured, for people.
    pub url: String,
    pub framing: Framing,
}

/// One simulated device.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    pub id: String,
    pub site: String,
    /// Name for people (Chinese allowed).
    pub name: String,
    /// Chooses how the signals move (see `super::values`).
    pub category: String,
    /// Index into the simulator's endpoints.
    pub endpoint: usize,
    pub unit: u8,
    pub model: Arc<DeviceModel>,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Response(Response),
    Exception(ExceptionCode),
    /// No answer at all (the client times out).
    Silence,
}

/// A communication fault in effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comms {
    NoResponse,
    Exception(ExceptionCode),
    Offline,
}

/// A fault resolved against its device: a communication fault, or a forced signal value.
#[derive(Debug, Clone, PartialEq)]
enum Resolved {
    Comms(Comms),
    Value(usize, Value),
}

#[derive(Debug)]
struct SimDevice {
    spec: DeviceSpec,
    values: DeviceValues,
    /// Register i of the model → its signal's index in `values`.
    reg_slot: Vec<usize>,
    /// Register i holds words written raw that decode to no value (a NaN, an enum index out
    /// of range): it keeps them instead of being re-encoded, until its signal is set again.
    pinned: Vec<bool>,
    /// Register i's value did not fit it once (logged once).
    warned: Vec<bool>,
    memory: Memory,
    manual_comms: Option<Comms>,
    manual_values: Vec<(usize, Value)>,
    /// In effect now (API faults, then scripted ones).
    comms: Option<Comms>,
    requests: u64,
}

#[derive(Debug)]
struct Scheduled {
    device: usize,
    fault: ScriptedFault,
    resolved: Resolved,
    active: bool,
}

/// The simulated estate's Modbus devices (see the module docs).
#[derive(Debug)]
pub struct Simulator {
    endpoints: Vec<EndpointSpec>,
    devices: Vec<SimDevice>,
    by_unit: HashMap<(usize, u8), usize>,
    /// `id` (the first device with it) and `site/id`.
    by_name: HashMap<String, usize>,
    script: Vec<Scheduled>,
    now: Duration,
    seed: u64,
}

impl Simulator {
    /// A simulator of `devices` on `endpoints`, values seeded by `seed`, with scripted faults.
    pub fn new(
        endpoints: Vec<EndpointSpec>,
        devices: Vec<DeviceSpec>,
        seed: u64,
        script: &[ScriptedFault],
    ) -> Result<Simulator, SimError> {
        let mut by_unit = HashMap::new();
        let mut by_name = HashMap::new();
        let mut sim_devices = Vec::with_capacity(devices.len());
        for (i, spec) in devices.into_iter().enumerate() {
            if spec.endpoint >= endpoints.len() {
                return Err(SimError::Invalid(format!(
                    "device `{}` names endpoint {} of {}",
                    spec.id,
                    spec.endpoint,
                    endpoints.len()
                )));
            }
            if let Some(&other) = by_unit.get(&(spec.endpoint, spec.unit)) {
                let other: &SimDevice = &sim_devices[other];
                return Err(SimError::Invalid(format!(
                    "devices `{}` and `{}` are both unit {} on endpoint `{}`",
                    other.spec.id, spec.id, spec.unit, endpoints[spec.endpoint].name
                )));
            }
            by_unit.insert((spec.endpoint, spec.unit), i);
            by_name.entry(spec.id.clone()).or_insert(i);
            by_name.insert(format!("{}/{}", spec.site, spec.id), i);
            sim_devices.push(SimDevice::new(spec, seed));
        }
        let mut sim = Simulator {
            endpoints,
            devices: sim_devices,
            by_unit,
            by_name,
            script: Vec::new(),
            now: Duration::ZERO,
            seed,
        };
        let mut errs = Vec::new();
        for f in script {
            let Some(&device) = sim.by_name.get(&f.device) else {
                errs.push(format!(
                    "{}.device: `{}` is not a simulated device; served: {}",
                    f.origin,
                    f.device,
                    sim.served_list()
                ));
                continue;
            };
            match sim.devices[device].resolve(&f.fault) {
                Ok(resolved) => sim.script.push(Scheduled {
                    device,
                    fault: f.clone(),
                    resolved,
                    active: false,
                }),
                Err(e) => {
                    let key = match e {
                        SimError::UnknownSignal { .. } => "signal",
                        _ => "value",
                    };
                    errs.push(format!("{}.{key}: {e}", f.origin));
                }
            }
        }
        if !errs.is_empty() {
            return Err(SimError::Script(ScriptErrors(errs)));
        }
        sim.update_script();
        Ok(sim)
    }

    /// A simulator of the devices of `cfg` that have a Modbus binding, on its Modbus endpoints.
    pub fn from_config(
        cfg: &Config,
        seed: u64,
        script: &[ScriptedFault],
    ) -> Result<Simulator, SimError> {
        let endpoints = cfg
            .modbus
            .endpoints
            .iter()
            .map(|e| EndpointSpec {
                name: e.name.clone(),
                url: e.kind.to_string(),
                framing: Framing::of(&e.kind),
            })
            .collect();
        // In inventory order, as the bindings are keyed by inventory index.
        let devices = cfg
            .modbus
            .bindings
            .iter()
            .map(|(&idx, b)| {
                let d = cfg.inventory.get(idx);
                DeviceSpec {
                    id: d.id.clone(),
                    site: d.site.clone(),
                    name: d.name.clone(),
                    category: d.category.clone(),
                    endpoint: b.endpoint,
                    unit: b.unit,
                    model: Arc::clone(&b.model),
                }
            })
            .collect();
        Simulator::new(endpoints, devices, seed, script)
    }

    /// Simulated time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn endpoints(&self) -> &[EndpointSpec] {
        &self.endpoints
    }

    /// The simulated devices, in configuration order.
    pub fn devices(&self) -> impl Iterator<Item = &DeviceSpec> {
        self.devices.iter().map(|d| &d.spec)
    }

    /// How many faults the script schedules.
    pub fn scripted_faults(&self) -> usize {
        self.script.len()
    }

    /// Advances simulated time by `dt`: scripted faults begin and end, values move, and every
    /// device's memory is re-encoded from its values.
    pub fn step(&mut self, dt: Duration) {
        self.now += dt;
        self.update_script();
        for d in &mut self.devices {
            d.values.step(dt);
            d.encode();
        }
    }

    /// Answers one request to `unit` on endpoint `endpoint` (see the module docs).
    pub fn handle(&mut self, endpoint: usize, unit: u8, req: &Request<'_>) -> Reply {
        let Some(&d) = self.by_unit.get(&(endpoint, unit)) else {
            return match self.endpoints.get(endpoint).map(|e| e.framing) {
                Some(Framing::Tcp) => Reply::Exception(ExceptionCode::GatewayTargetDevice),
                _ => Reply::Silence,
            };
        };
        let dev = &mut self.devices[d];
        dev.requests += 1;
        match dev.comms {
            Some(Comms::NoResponse | Comms::Offline) => Reply::Silence,
            Some(Comms::Exception(code)) => Reply::Exception(code),
            None => match dev.serve(req) {
                Ok(r) => Reply::Response(r),
                Err(code) => Reply::Exception(code),
            },
        }
    }

    /// Whether endpoint `endpoint` is down: a TCP listener whose devices are all `Offline`.
    pub fn endpoint_down(&self, endpoint: usize) -> bool {
        if self.endpoints.get(endpoint).map(|e| e.framing) == Some(Framing::Rtu) {
            return false;
        }
        let mut on = self
            .devices
            .iter()
            .filter(|d| d.spec.endpoint == endpoint)
            .peekable();
        on.peek().is_some() && on.all(|d| d.comms == Some(Comms::Offline))
    }

    /// The value a client reads for `signal` of `device` (a forced value while a `value`
    /// fault holds). The register's resolution applies on the wire (e.g. 0.001 MPa).
    pub fn get_value(&self, device: &str, signal: &str) -> Result<Value, SimError> {
        let d = &self.devices[self.device(device)?];
        let slot = d.slot(signal)?;
        Ok(d.values.effective(slot).clone())
    }

    /// What a client reading `signal` of `device` now decodes: the value as its register holds
    /// it, at the register's resolution (`get_value` 0.4123 MPa is 0.412 on a 0.001 MPa
    /// register). An error if the register holds raw words that decode to no value.
    pub fn wire_value(&self, device: &str, signal: &str) -> Result<Value, SimError> {
        let d = &self.devices[self.device(device)?];
        let slot = d.slot(signal)?;
        let reg = d
            .reg_slot
            .iter()
            .position(|s| *s == slot)
            .map(|r| &d.spec.model.registers[r]);
        match reg.map(|r| d.memory.load(r)) {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(SimError::BadValue {
                device: d.spec.id.clone(),
                signal: signal.to_owned(),
                value: "(raw words)".into(),
                reason: e.to_string(),
            }),
            None => Err(SimError::Invalid(format!("`{signal}` has no register"))),
        }
    }

    /// Sets `signal` of `device` (accepting an integer for a float, 0/1 for a bool); moving
    /// signals move on from it at the next step. Forced values (faults) still win.
    pub fn set_value(&mut self, device: &str, signal: &str, value: Value) -> Result<(), SimError> {
        let i = self.device(device)?;
        let d = &mut self.devices[i];
        let slot = d.slot(signal)?;
        let v = d.checked_value(slot, &value)?;
        d.values.set(slot, v);
        for (r, s) in d.reg_slot.iter().enumerate() {
            if *s == slot {
                d.pinned[r] = false;
            }
        }
        d.encode();
        Ok(())
    }

    /// Sets a fault of `device` until `clear_fault` (a communication fault replaces the
    /// previous one; a `value` fault replaces the previous one of the same signal). API faults
    /// win over scripted ones.
    pub fn set_fault(&mut self, device: &str, fault: Fault) -> Result<(), SimError> {
        let i = self.device(device)?;
        let d = &mut self.devices[i];
        let resolved = d.resolve(&fault)?;
        match resolved {
            Resolved::Comms(c) => d.manual_comms = Some(c),
            Resolved::Value(slot, v) => {
                d.manual_values.retain(|(s, _)| *s != slot);
                d.manual_values.push((slot, v));
            }
        }
        tracing::info!(device = %d.spec.id, fault = %fault, "Simulated fault set.");
        self.apply_faults(i);
        Ok(())
    }

    /// Clears the faults set through the API on `device` (scripted ones follow their script).
    pub fn clear_fault(&mut self, device: &str) -> Result<(), SimError> {
        let i = self.device(device)?;
        let d = &mut self.devices[i];
        if d.manual_comms.is_some() || !d.manual_values.is_empty() {
            tracing::info!(device = %d.spec.id, "Simulated faults cleared.");
        }
        d.manual_comms = None;
        d.manual_values.clear();
        self.apply_faults(i);
        Ok(())
    }

    /// Writes raw words into any register table of `device` (input registers too), as if a
    /// client had written them: registers that decode take the value; registers that do not
    /// (a NaN, an enum index out of range) keep the raw words until their signal is set again.
    pub fn set_words(
        &mut self,
        device: &str,
        table: Table,
        address: u16,
        words: &[u16],
    ) -> Result<(), SimError> {
        let i = self.device(device)?;
        let d = &mut self.devices[i];
        if table.is_bits() {
            return Err(d.address_error(table, address, words.len(), "a bit table: use set_bits"));
        }
        d.memory
            .write_words(table, address, words)
            .map_err(|_| d.address_error(table, address, words.len(), "outside its memory"))?;
        d.absorb(table, address, words.len());
        Ok(())
    }

    /// Writes raw bits into a coil or discrete-input table of `device` (see `set_words`).
    pub fn set_bits(
        &mut self,
        device: &str,
        table: Table,
        address: u16,
        bits: &[bool],
    ) -> Result<(), SimError> {
        let i = self.device(device)?;
        let d = &mut self.devices[i];
        if !table.is_bits() {
            return Err(d.address_error(
                table,
                address,
                bits.len(),
                "a register table: use set_words",
            ));
        }
        d.memory
            .write_bits(table, address, bits)
            .map_err(|_| d.address_error(table, address, bits.len(), "outside its memory"))?;
        d.absorb(table, address, bits.len());
        Ok(())
    }

    /// Reads `count` words of `device`'s memory, without counting a request.
    pub fn read_words(
        &self,
        device: &str,
        table: Table,
        address: u16,
        count: u16,
    ) -> Result<Vec<u16>, SimError> {
        let d = &self.devices[self.device(device)?];
        if table.is_bits() {
            return Err(d.address_error(table, address, usize::from(count), "a bit table"));
        }
        d.memory
            .read_words(table, address, count)
            .map_err(|_| d.address_error(table, address, usize::from(count), "outside its memory"))
    }

    /// Requests addressed to `device` so far (answered or not).
    pub fn device_requests(&self, device: &str) -> Result<u64, SimError> {
        Ok(self.devices[self.device(device)?].requests)
    }

    fn device(&self, name: &str) -> Result<usize, SimError> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| SimError::UnknownDevice {
                device: name.to_owned(),
                served: self.served_list(),
            })
    }

    /// The served device ids, for messages (the first ten of a big estate).
    fn served_list(&self) -> String {
        if self.devices.is_empty() {
            return "none (no device of the configuration has a Modbus binding)".into();
        }
        let mut s = self
            .devices
            .iter()
            .take(10)
            .map(|d| d.spec.id.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if self.devices.len() > 10 {
            s.push_str(&format!(", … ({} in all)", self.devices.len()));
        }
        s
    }

    /// Starts and ends scripted faults at the current simulated time.
    fn update_script(&mut self) {
        let mut dirty = Vec::new();
        for s in &mut self.script {
            let active = s.fault.active_at(self.now);
            if active != s.active {
                s.active = active;
                dirty.push(s.device);
                let device = &self.devices[s.device].spec.id;
                if active {
                    tracing::info!(device = %device, fault = %s.fault.fault, origin = %s.fault.origin, "Simulated fault begins.");
                } else {
                    tracing::info!(device = %device, fault = %s.fault.fault, origin = %s.fault.origin, "Simulated fault ends.");
                }
            }
        }
        dirty.dedup();
        for d in dirty {
            self.apply_faults(d);
        }
    }

    /// Recomputes the faults in effect on device `i` and re-encodes its memory.
    fn apply_faults(&mut self, i: usize) {
        let d = &mut self.devices[i];
        let mut comms = d.manual_comms;
        let mut forced: Vec<Option<Value>> = vec![None; d.values.signals().count()];
        for s in self.script.iter().filter(|s| s.device == i && s.active) {
            match &s.resolved {
                Resolved::Comms(c) => {
                    comms.get_or_insert(*c);
                }
                Resolved::Value(slot, v) => forced[*slot] = Some(v.clone()),
            }
        }
        for (slot, v) in &d.manual_values {
            forced[*slot] = Some(v.clone());
        }
        d.comms = comms;
        for (slot, v) in forced.into_iter().enumerate() {
            d.values.force(slot, v);
        }
        d.encode();
    }
}

impl SimDevice {
    fn new(spec: DeviceSpec, seed: u64) -> SimDevice {
        let mut signals: Vec<(String, SignalType)> = Vec::new();
        let mut reg_slot = Vec::with_capacity(spec.model.registers.len());
        for r in &spec.model.registers {
            let slot = match signals.iter().position(|(n, _)| *n == r.signal) {
                Some(s) => s,
                None => {
                    signals.push((r.signal.clone(), r.signal_type.clone()));
                    signals.len() - 1
                }
            };
            reg_slot.push(slot);
        }
        let values = DeviceValues::new(&spec.category, &signals, seed, &spec.id);
        let n = spec.model.registers.len();
        let memory = Memory::for_registers(&spec.model.registers);
        let mut d = SimDevice {
            spec,
            values,
            reg_slot,
            pinned: vec![false; n],
            warned: vec![false; n],
            memory,
            manual_comms: None,
            manual_values: Vec::new(),
            comms: None,
            requests: 0,
        };
        d.encode();
        d
    }

    fn slot(&self, signal: &str) -> Result<usize, SimError> {
        self.values
            .index(signal)
            .ok_or_else(|| SimError::UnknownSignal {
                device: self.spec.id.clone(),
                model: self.spec.model.name.clone(),
                signal: signal.to_owned(),
                known: self
                    .values
                    .signals()
                    .map(|(n, _)| n)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// `value` as a value of signal `slot`, checked to fit each of its registers.
    fn checked_value(&self, slot: usize, value: &Value) -> Result<Value, SimError> {
        let name = self.values.signal_name(slot).to_owned();
        let ty = self.values.signal_type(slot).clone();
        let bad = |reason: String| SimError::BadValue {
            device: self.spec.id.clone(),
            signal: name.clone(),
            value: value.to_string(),
            reason,
        };
        let v = coerce(value, &ty).ok_or_else(|| {
            bad(match &ty {
                SignalType::Enum(values) => format!("expected one of {}", values.join(", ")),
                other => format!("expected a {} value", other.name()),
            })
        })?;
        for (r, reg) in self.spec.model.registers.iter().enumerate() {
            if self.reg_slot[r] == slot {
                reg.encode(&v, Some(0)).map_err(|e| {
                    bad(format!(
                        "does not fit its register ({} {} {}): {e}",
                        reg.table.name(),
                        reg.address,
                        reg.ty.name()
                    ))
                })?;
            }
        }
        Ok(v)
    }

    fn resolve(&self, fault: &Fault) -> Result<Resolved, SimError> {
        Ok(match fault {
            Fault::NoResponse => Resolved::Comms(Comms::NoResponse),
            Fault::Offline => Resolved::Comms(Comms::Offline),
            Fault::Exception(code) => Resolved::Comms(Comms::Exception(*code)),
            Fault::Value { signal, value } => {
                let slot = self.slot(signal)?;
                let v = self.checked_value(slot, value)?;
                Resolved::Value(slot, v)
            }
        })
    }

    fn address_error(&self, table: Table, address: u16, count: usize, reason: &str) -> SimError {
        SimError::Address {
            device: self.spec.id.clone(),
            table: table.name(),
            address,
            count,
            size: self.memory.len(table),
            reason: reason.to_owned(),
        }
    }

    /// Encodes every register from its signal's value (skipping raw-pinned ones).
    fn encode(&mut self) {
        for (i, reg) in self.spec.model.registers.iter().enumerate() {
            if self.pinned[i] {
                continue;
            }
            let v = self.values.effective(self.reg_slot[i]);
            if let Err(e) = self.memory.store(reg, v) {
                if !self.warned[i] {
                    self.warned[i] = true;
                    tracing::warn!(
                        device = %self.spec.id, signal = %reg.signal, value = %v, error = %e,
                        "Simulated value does not fit its register; the register keeps its last words."
                    );
                }
            }
        }
    }

    /// After a write of `count` addresses from `start`: registers it touched take the value
    /// their words now decode to.
    fn absorb(&mut self, table: Table, start: u16, count: usize) {
        for (i, reg) in self.spec.model.registers.iter().enumerate() {
            if !overlaps(reg, table, start, count) {
                continue;
            }
            let slot = self.reg_slot[i];
            match self.memory.load(reg) {
                Ok(v) => {
                    self.pinned[i] = false;
                    if let Some(v) = coerce(&v, self.values.signal_type(slot)) {
                        self.values.set(slot, v);
                    }
                }
                Err(_) => self.pinned[i] = true,
            }
        }
        self.encode();
    }

    /// Answers a request from memory (no faults in effect).
    fn serve(&mut self, req: &Request<'_>) -> Result<Response, ExceptionCode> {
        let m = &mut self.memory;
        let (table, start, count, resp) = match req {
            Request::ReadCoils(a, n) => {
                return Ok(Response::ReadCoils(m.read_bits(Table::Coil, *a, *n)?))
            }
            Request::ReadDiscreteInputs(a, n) => {
                return Ok(Response::ReadDiscreteInputs(m.read_bits(
                    Table::Discrete,
                    *a,
                    *n,
                )?))
            }
            Request::ReadHoldingRegisters(a, n) => {
                return Ok(Response::ReadHoldingRegisters(m.read_words(
                    Table::Holding,
                    *a,
                    *n,
                )?))
            }
            Request::ReadInputRegisters(a, n) => {
                return Ok(Response::ReadInputRegisters(m.read_words(
                    Table::Input,
                    *a,
                    *n,
                )?))
            }
            Request::WriteSingleCoil(a, b) => {
                m.write_bits(Table::Coil, *a, &[*b])?;
                (Table::Coil, *a, 1, Response::WriteSingleCoil(*a, *b))
            }
            Request::WriteMultipleCoils(a, bits) => {
                m.write_bits(Table::Coil, *a, bits)?;
                let n = bits.len();
                (
                    Table::Coil,
                    *a,
                    n,
                    Response::WriteMultipleCoils(*a, n as u16),
                )
            }
            Request::WriteSingleRegister(a, w) => {
                m.write_words(Table::Holding, *a, &[*w])?;
                (Table::Holding, *a, 1, Response::WriteSingleRegister(*a, *w))
            }
            Request::WriteMultipleRegisters(a, ws) => {
                m.write_words(Table::Holding, *a, ws)?;
                let n = ws.len();
                (
                    Table::Holding,
                    *a,
                    n,
                    Response::WriteMultipleRegisters(*a, n as u16),
                )
            }
            Request::MaskWriteRegister(a, and, or) => {
                let cur = m.read_words(Table::Holding, *a, 1)?[0];
                // Modbus spec §6.16: result = (current AND and_mask) OR (or_mask AND NOT and_mask).
                m.write_words(Table::Holding, *a, &[(cur & and) | (or & !and)])?;
                (
                    Table::Holding,
                    *a,
                    1,
                    Response::MaskWriteRegister(*a, *and, *or),
                )
            }
            Request::ReadWriteMultipleRegisters(ra, rn, wa, ws) => {
                // Check the read before writing, so a bad read changes nothing.
                m.read_words(Table::Holding, *ra, *rn)?;
                m.write_words(Table::Holding, *wa, ws)?;
                self.absorb(Table::Holding, *wa, ws.len());
                return Ok(Response::ReadWriteMultipleRegisters(
                    self.memory.read_words(Table::Holding, *ra, *rn)?,
                ));
            }
            _ => return Err(ExceptionCode::IllegalFunction),
        };
        self.absorb(table, start, count);
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::modbus::map::{Order, RegType, Register};
    use crate::source::modbus::plan::Limits;

    #[allow(clippy::too_many_arguments)] // a test helper: one argument per register field
    fn reg(
        signal: &str,
        table: Table,
        address: u16,
        ty: RegType,
        order: Order,
        scale: f64,
        signal_type: SignalType,
        values: Option<Vec<String>>,
    ) -> Register {
        Register {
            signal: signal.into(),
            signal_idx: 0,
            table,
            address,
            ty,
            order,
            scale,
            offset: 0.0,
            values,
            writable: true,
            min: None,
            max: None,
            signal_type,
            report: None,
        }
    }

    /// The built-in `heating_plc` map, by hand.
    fn heating_plc() -> Arc<DeviceModel> {
        use SignalType::*;
        let h = Table::Holding;
        Arc::new(DeviceModel::new(
            "heating_plc".into(),
            "heating_loop".into(),
            vec![
                reg(
                    "supply_temp_c",
                    h,
                    0,
                    RegType::F32,
                    Order::Abcd,
                    1.0,
                    Float,
                    None,
                ),
                reg(
                    "return_temp_c",
                    h,
                    2,
                    RegType::F32,
                    Order::Abcd,
                    1.0,
                    Float,
                    None,
                ),
                reg(
                    "pressure_mpa",
                    h,
                    4,
                    RegType::U16,
                    Order::Abcd,
                    0.001,
                    Float,
                    None,
                ),
                reg(
                    "flow_m3h",
                    h,
                    6,
                    RegType::F32,
                    Order::Cdab,
                    1.0,
                    Float,
                    None,
                ),
                reg(
                    "pump_running",
                    h,
                    10,
                    RegType::Bit(0),
                    Order::Abcd,
                    1.0,
                    Bool,
                    None,
                ),
                reg(
                    "fault_code",
                    h,
                    11,
                    RegType::U16,
                    Order::Abcd,
                    1.0,
                    Int,
                    None,
                ),
                reg(
                    "supply_setpoint_c",
                    h,
                    12,
                    RegType::F32,
                    Order::Abcd,
                    1.0,
                    Float,
                    None,
                ),
            ],
            Limits::default(),
        ))
    }

    fn fire_pump_panel() -> Arc<DeviceModel> {
        use SignalType::*;
        let power = vec!["main".to_owned(), "backup".to_owned()];
        Arc::new(DeviceModel::new(
            "fire_pump_panel".into(),
            "fire_equipment".into(),
            vec![
                reg(
                    "pump_auto",
                    Table::Coil,
                    0,
                    RegType::Bool,
                    Order::Abcd,
                    1.0,
                    Bool,
                    None,
                ),
                reg(
                    "fire_alarm",
                    Table::Discrete,
                    0,
                    RegType::Bool,
                    Order::Abcd,
                    1.0,
                    Bool,
                    None,
                ),
                reg(
                    "fault_count",
                    Table::Input,
                    0,
                    RegType::U16,
                    Order::Abcd,
                    1.0,
                    Int,
                    None,
                ),
                reg(
                    "pressure_mpa",
                    Table::Input,
                    1,
                    RegType::I16,
                    Order::Abcd,
                    0.01,
                    Float,
                    None,
                ),
                reg(
                    "power",
                    Table::Input,
                    2,
                    RegType::U16,
                    Order::Abcd,
                    1.0,
                    Enum(power.clone()),
                    Some(power),
                ),
            ],
            Limits::default(),
        ))
    }

    fn device(
        id: &str,
        category: &str,
        endpoint: usize,
        unit: u8,
        model: Arc<DeviceModel>,
    ) -> DeviceSpec {
        DeviceSpec {
            id: id.into(),
            site: "huafu".into(),
            name: id.into(),
            category: category.into(),
            endpoint,
            unit,
            model,
        }
    }

    /// HX-1 (unit 1) and HX-2 (unit 2) on a TCP endpoint; FP-1 (unit 3) alone on an RTU line.
    fn estate(script: &[ScriptedFault]) -> Simulator {
        Simulator::new(
            vec![
                EndpointSpec {
                    name: "plant".into(),
                    url: "tcp://127.0.0.1:1502".into(),
                    framing: Framing::Tcp,
                },
                EndpointSpec {
                    name: "bus".into(),
                    url: "rtu:///dev/ttyUSB0".into(),
                    framing: Framing::Rtu,
                },
            ],
            vec![
                device("HX-1", "heating_loop", 0, 1, heating_plc()),
                device("HX-2", "heating_loop", 0, 2, heating_plc()),
                device("FP-1", "fire_equipment", 1, 3, fire_pump_panel()),
            ],
            7,
            script,
        )
        .unwrap()
    }

    fn words(r: Reply) -> Vec<u16> {
        match r {
            Reply::Response(
                Response::ReadHoldingRegisters(w) | Response::ReadInputRegisters(w),
            ) => w,
            other => panic!("not words: {other:?}"),
        }
    }

    fn f32_abcd(w: &[u16]) -> f32 {
        f32::from_bits(u32::from(w[0]) << 16 | u32::from(w[1]))
    }

    #[test]
    fn reads_come_from_the_encoded_values_with_gaps_and_limits() {
        let mut sim = estate(&[]);
        sim.set_value("HX-1", "supply_temp_c", Value::Float(25.0))
            .unwrap();
        sim.set_value("HX-1", "pressure_mpa", Value::Float(0.42))
            .unwrap();
        sim.set_value("HX-1", "flow_m3h", Value::Float(25.0))
            .unwrap();
        let w = words(sim.handle(0, 1, &Request::ReadHoldingRegisters(0, 14)));
        assert_eq!(&w[0..2], &[0x41C8, 0x0000]); // 25.0 f32 ABCD
        assert_eq!(w[4], 420); // 0.42 MPa at 0.001 MPa per count
        assert_eq!(w[5], 0); // a gap
        assert_eq!(&w[6..8], &[0x0000, 0x41C8]); // 25.0 f32 CDAB
        assert_eq!(w[10], 1); // pump_running, bit 0
        assert_eq!(w[11], 0); // fault_code
        assert_eq!(f32_abcd(&w[12..14]), 55.0); // setpoint
                                                // The margin reads as zeros; beyond it, and tables the model lacks, are illegal.
        assert_eq!(
            words(sim.handle(0, 1, &Request::ReadHoldingRegisters(14, 16))),
            vec![0; 16]
        );
        for req in [
            Request::ReadHoldingRegisters(29, 2),
            Request::ReadInputRegisters(0, 1),
            Request::ReadCoils(0, 1),
        ] {
            assert_eq!(
                sim.handle(0, 1, &req),
                Reply::Exception(ExceptionCode::IllegalDataAddress),
                "{req:?}"
            );
        }
        assert_eq!(
            sim.handle(0, 1, &Request::ReadHoldingRegisters(0, 126)),
            Reply::Exception(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(
            sim.handle(0, 1, &Request::ReportServerId),
            Reply::Exception(ExceptionCode::IllegalFunction)
        );
        // Unknown units: a TCP gateway says so, a serial bus stays silent.
        assert_eq!(
            sim.handle(0, 9, &Request::ReadHoldingRegisters(0, 1)),
            Reply::Exception(ExceptionCode::GatewayTargetDevice)
        );
        assert_eq!(sim.handle(1, 9, &Request::ReadCoils(0, 1)), Reply::Silence);
        // Bits, signed scaled values and enums of the fire pump panel.
        sim.set_value("FP-1", "pressure_mpa", Value::Float(-0.05))
            .unwrap();
        sim.set_value("FP-1", "power", Value::Str("backup".into()))
            .unwrap();
        assert_eq!(
            sim.handle(1, 3, &Request::ReadCoils(0, 1)),
            Reply::Response(Response::ReadCoils(vec![true]))
        );
        assert_eq!(
            sim.handle(1, 3, &Request::ReadDiscreteInputs(0, 1)),
            Reply::Response(Response::ReadDiscreteInputs(vec![false]))
        );
        assert_eq!(
            words(sim.handle(1, 3, &Request::ReadInputRegisters(0, 3))),
            vec![0, 0xFFFB, 1]
        );
        assert_eq!(sim.device_requests("FP-1").unwrap(), 3);
    }

    #[test]
    fn writes_change_memory_and_values() {
        let mut sim = estate(&[]);
        let sixty = 60.0f32.to_bits();
        let req =
            Request::WriteMultipleRegisters(12, vec![(sixty >> 16) as u16, sixty as u16].into());
        assert_eq!(
            sim.handle(0, 1, &req),
            Reply::Response(Response::WriteMultipleRegisters(12, 2))
        );
        assert_eq!(
            sim.get_value("HX-1", "supply_setpoint_c").unwrap(),
            Value::Float(60.0)
        );
        assert_eq!(
            sim.get_value("HX-2", "supply_setpoint_c").unwrap(),
            Value::Float(55.0)
        );
        // The supply follows the new setpoint.
        for _ in 0..240 {
            sim.step(Duration::from_secs(30));
        }
        let Value::Float(supply) = sim.get_value("HX-1", "supply_temp_c").unwrap() else {
            panic!("float")
        };
        assert!((supply - 60.0).abs() < 4.0, "{supply}");

        assert_eq!(
            sim.handle(1, 3, &Request::WriteSingleCoil(0, false)),
            Reply::Response(Response::WriteSingleCoil(0, false))
        );
        assert_eq!(
            sim.get_value("FP-1", "pump_auto").unwrap(),
            Value::Bool(false)
        );
        sim.step(Duration::from_secs(10));
        assert_eq!(
            sim.get_value("FP-1", "pump_auto").unwrap(),
            Value::Bool(false)
        );

        // Mask write clears bit 0 of the status word (pump_running) and sets bit 4 (a gap bit).
        assert_eq!(
            sim.handle(0, 2, &Request::MaskWriteRegister(10, 0xFFEE, 0x0010)),
            Reply::Response(Response::MaskWriteRegister(10, 0xFFEE, 0x0010))
        );
        assert_eq!(
            sim.get_value("HX-2", "pump_running").unwrap(),
            Value::Bool(false)
        );
        assert_eq!(
            sim.read_words("HX-2", Table::Holding, 10, 1).unwrap(),
            vec![0x0010]
        );
        assert_eq!(
            sim.handle(0, 2, &Request::WriteSingleRegister(11, 7)),
            Reply::Response(Response::WriteSingleRegister(11, 7))
        );
        assert_eq!(sim.get_value("HX-2", "fault_code").unwrap(), Value::Int(7));
        assert_eq!(
            sim.handle(0, 2, &Request::WriteSingleRegister(40, 7)),
            Reply::Exception(ExceptionCode::IllegalDataAddress)
        );
    }

    #[test]
    fn raw_words_that_do_not_decode_stay_until_the_signal_is_set() {
        let mut sim = estate(&[]);
        sim.set_words("HX-1", Table::Holding, 0, &[0x7FC0, 0x0000])
            .unwrap(); // NaN
        sim.step(Duration::from_secs(1));
        assert_eq!(
            sim.read_words("HX-1", Table::Holding, 0, 2).unwrap(),
            vec![0x7FC0, 0]
        );
        sim.set_words("FP-1", Table::Input, 2, &[9]).unwrap(); // no such enum value
        sim.step(Duration::from_secs(1));
        assert_eq!(sim.read_words("FP-1", Table::Input, 2, 1).unwrap(), vec![9]);
        assert_eq!(
            sim.get_value("FP-1", "power").unwrap(),
            Value::Str("main".into())
        );
        assert!(matches!(
            sim.wire_value("HX-1", "supply_temp_c"),
            Err(SimError::BadValue { .. })
        ));
        sim.set_value("HX-1", "supply_temp_c", Value::Int(25))
            .unwrap();
        assert_eq!(
            sim.read_words("HX-1", Table::Holding, 0, 2).unwrap(),
            vec![0x41C8, 0]
        );
        sim.set_value("HX-1", "pressure_mpa", Value::Float(0.4123))
            .unwrap();
        assert_eq!(
            sim.get_value("HX-1", "pressure_mpa").unwrap(),
            Value::Float(0.4123)
        );
        // Exactly what the gateway decodes: raw 412 × 0.001.
        assert_eq!(
            sim.wire_value("HX-1", "pressure_mpa").unwrap(),
            Value::Float(412.0 * 0.001)
        );
        assert!(matches!(
            sim.set_words("HX-1", Table::Holding, 29, &[1, 2]),
            Err(SimError::Address { .. })
        ));
        assert!(matches!(
            sim.set_value("HX-1", "pressure_mpa", Value::Float(70.0)),
            Err(SimError::BadValue { .. })
        ));
        assert!(matches!(
            sim.set_value("HX-1", "nope", Value::Float(1.0)),
            Err(SimError::UnknownSignal { .. })
        ));
        assert!(matches!(
            sim.get_value("HX-9", "supply_temp_c"),
            Err(SimError::UnknownDevice { .. })
        ));
        assert!(sim.get_value("huafu/HX-1", "supply_temp_c").is_ok());
    }

    #[test]
    fn api_faults_hold_until_cleared() {
        let mut sim = estate(&[]);
        let read = Request::ReadHoldingRegisters(0, 2);
        sim.set_fault("HX-1", Fault::Exception(ExceptionCode::ServerDeviceBusy))
            .unwrap();
        assert_eq!(
            sim.handle(0, 1, &read),
            Reply::Exception(ExceptionCode::ServerDeviceBusy)
        );
        assert!(matches!(sim.handle(0, 2, &read), Reply::Response(_)));
        sim.set_fault("HX-1", Fault::NoResponse).unwrap();
        assert_eq!(sim.handle(0, 1, &read), Reply::Silence);
        sim.set_fault(
            "HX-1",
            Fault::Value {
                signal: "supply_temp_c".into(),
                value: Value::Int(20),
            },
        )
        .unwrap();
        sim.clear_fault("HX-1").unwrap();
        assert!(matches!(sim.handle(0, 1, &read), Reply::Response(_)));
        assert_ne!(
            sim.get_value("HX-1", "supply_temp_c").unwrap(),
            Value::Float(20.0)
        );

        // Offline: the endpoint goes down only when all its devices are offline; a serial
        // line never goes down (its offline units are silent).
        sim.set_fault("HX-1", Fault::Offline).unwrap();
        assert!(!sim.endpoint_down(0));
        assert_eq!(sim.handle(0, 1, &read), Reply::Silence);
        sim.set_fault("HX-2", Fault::Offline).unwrap();
        assert!(sim.endpoint_down(0));
        sim.clear_fault("HX-2").unwrap();
        assert!(!sim.endpoint_down(0));
        sim.set_fault("FP-1", Fault::Offline).unwrap();
        assert!(!sim.endpoint_down(1));
        assert_eq!(sim.handle(1, 3, &Request::ReadCoils(0, 1)), Reply::Silence);
    }

    #[test]
    fn scripted_faults_follow_simulated_time() {
        let script = crate::sim::parse_script(
            "f.toml",
            r#"
            [[fault]]
            device = "HX-1"
            at = "30s"
            for = "5m"
            kind = "value"
            signal = "supply_temp_c"
            value = 20

            [[fault]]
            device = "HX-2"
            at = "10s"
            for = "1s"
            kind = "exception"
            code = "illegal_data_address"

            [[fault]]
            device = "FP-1"
            kind = "no_response"
            "#,
        )
        .unwrap();
        let mut sim = estate(&script);
        let read = Request::ReadHoldingRegisters(0, 2);
        assert_eq!(sim.handle(1, 3, &Request::ReadCoils(0, 1)), Reply::Silence);
        let supply = |sim: &Simulator| sim.get_value("HX-1", "supply_temp_c").unwrap();
        for _ in 0..20 {
            sim.step(Duration::from_millis(500));
        }
        assert_eq!(sim.now(), Duration::from_secs(10));
        assert_eq!(
            sim.handle(0, 2, &read),
            Reply::Exception(ExceptionCode::IllegalDataAddress)
        );
        sim.step(Duration::from_secs(1));
        assert!(matches!(sim.handle(0, 2, &read), Reply::Response(_)));
        assert_ne!(supply(&sim), Value::Float(20.0));
        sim.step(Duration::from_secs(19));
        assert_eq!(supply(&sim), Value::Float(20.0));
        assert_eq!(words(sim.handle(0, 1, &read)), vec![0x41A0, 0x0000]); // 20.0 f32
                                                                          // An API fault on the same signal wins; clearing it returns to the script.
        sim.set_fault(
            "HX-1",
            Fault::Value {
                signal: "supply_temp_c".into(),
                value: Value::Float(30.0),
            },
        )
        .unwrap();
        assert_eq!(supply(&sim), Value::Float(30.0));
        sim.clear_fault("HX-1").unwrap();
        assert_eq!(supply(&sim), Value::Float(20.0));
        sim.step(Duration::from_secs(300));
        assert_ne!(supply(&sim), Value::Float(20.0));
        assert_eq!(sim.handle(1, 3, &Request::ReadCoils(0, 1)), Reply::Silence);
    }

    #[test]
    fn the_same_seed_gives_the_same_estate() {
        let run = || {
            let mut sim = estate(&[]);
            let mut out = Vec::new();
            for _ in 0..50 {
                sim.step(Duration::from_millis(500));
                out.push(sim.read_words("HX-1", Table::Holding, 0, 14).unwrap());
            }
            out
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn bad_scripts_and_duplicate_units_are_refused() {
        let script = crate::sim::parse_script(
            "f.toml",
            "[[fault]]\ndevice = \"HX-9\"\nkind = \"offline\"\n",
        )
        .unwrap();
        let Err(SimError::Script(e)) = Simulator::new(vec![], vec![], 1, &script) else {
            panic!("accepted")
        };
        assert!(
            e.to_string().contains(
                "f.toml: fault[0].device: `HX-9` is not a simulated device; served: none"
            ),
            "{e}"
        );
        let ep = EndpointSpec {
            name: "plant".into(),
            url: "tcp://x:1".into(),
            framing: Framing::Tcp,
        };
        let err = Simulator::new(
            vec![ep],
            vec![
                device("HX-1", "heating_loop", 0, 1, heating_plc()),
                device("HX-2", "heating_loop", 0, 1, heating_plc()),
            ],
            1,
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("both unit 1"), "{err}");
    }
}
