//! Between the plan and the wire: the read request of a planned `ReadRequest`, and the typed
//! values of its response (pure, tested without a device).

use tokio_modbus::{Request, Response};

use crate::model::Value;
use crate::source::modbus::map::{DecodeError, Table};
use crate::source::modbus::plan::ReadRequest;
use crate::source::modbus::DeviceModel;

/// The raw data of a read response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Data {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

/// The Modbus request that reads `q`.
pub(super) fn read_request(q: &ReadRequest) -> Request<'static> {
    match q.table {
        Table::Coil => Request::ReadCoils(q.start, q.count),
        Table::Discrete => Request::ReadDiscreteInputs(q.start, q.count),
        Table::Holding => Request::ReadHoldingRegisters(q.start, q.count),
        Table::Input => Request::ReadInputRegisters(q.start, q.count),
    }
}

/// The data of a read response; `None` for a response that carries none (tokio-modbus
/// already rejects a response whose function code differs from the request's).
pub(super) fn data(r: Response) -> Option<Data> {
    match r {
        // Bits come padded to a whole byte; offsets index from the start, so padding is harmless.
        Response::ReadCoils(b) | Response::ReadDiscreteInputs(b) => Some(Data::Bits(b)),
        Response::ReadHoldingRegisters(w) | Response::ReadInputRegisters(w) => Some(Data::Words(w)),
        _ => None,
    }
}

/// Decodes every register of `q` from `data` into `values` (signal index, value); a register
/// that does not decode is left out and reported in `errors` (register index, why).
pub(super) fn decode(
    model: &DeviceModel,
    q: &ReadRequest,
    data: &Data,
    values: &mut Vec<(u16, Value)>,
    errors: &mut Vec<(usize, DecodeError)>,
) {
    for &(ri, off) in &q.items {
        let Some(reg) = model.registers.get(ri) else {
            continue;
        };
        let off = usize::from(off);
        let v = match data {
            Data::Bits(bits) => match bits.get(off) {
                Some(b) => reg.decode_bit(*b),
                None => Err(DecodeError::Short {
                    want: off + 1,
                    got: bits.len(),
                }),
            },
            Data::Words(words) => reg.decode_words(words.get(off..).unwrap_or(&[])),
        };
        match v {
            Ok(v) => values.push((reg.signal_idx, v)),
            Err(e) => errors.push((ri, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SignalType;
    use crate::source::modbus::map::{Order, RegType, Register};
    use crate::source::modbus::plan::Limits;

    fn reg(signal_idx: u16, table: Table, address: u16, ty: RegType, st: SignalType) -> Register {
        Register {
            signal: format!("s{signal_idx}"),
            signal_idx,
            table,
            address,
            ty,
            order: Order::Abcd,
            scale: 1.0,
            offset: 0.0,
            values: None,
            writable: false,
            min: None,
            max: None,
            signal_type: st,
            report: None,
        }
    }

    /// A model like the heating PLC: f32s, a word-swapped f32, a status bit, a scaled u16 and
    /// an enum, plus a coil.
    fn model() -> DeviceModel {
        let mut flow = reg(2, Table::Holding, 6, RegType::F32, SignalType::Float);
        flow.order = Order::Cdab;
        let mut pressure = reg(3, Table::Holding, 4, RegType::U16, SignalType::Float);
        pressure.scale = 0.001;
        let mode_values = vec!["main".to_owned(), "backup".to_owned()];
        let mut power = reg(
            5,
            Table::Holding,
            11,
            RegType::U16,
            SignalType::Enum(mode_values.clone()),
        );
        power.values = Some(mode_values);
        DeviceModel::new(
            "test".into(),
            "heating_loop".into(),
            vec![
                reg(0, Table::Holding, 0, RegType::F32, SignalType::Float),
                reg(1, Table::Holding, 2, RegType::F32, SignalType::Float),
                flow,
                pressure,
                reg(4, Table::Holding, 10, RegType::Bit(0), SignalType::Bool),
                power,
                reg(6, Table::Coil, 0, RegType::Bool, SignalType::Bool),
            ],
            Limits::default(),
        )
    }

    fn f32_words(x: f32) -> [u16; 2] {
        let b = x.to_be_bytes();
        [
            u16::from_be_bytes([b[0], b[1]]),
            u16::from_be_bytes([b[2], b[3]]),
        ]
    }

    #[test]
    fn a_poll_decodes_from_its_plan() {
        let m = model();
        assert_eq!(m.plan.len(), 2, "{:?}", m.plan);
        let coils = &m.plan[0];
        let regs = &m.plan[1];
        assert_eq!(read_request(coils), Request::ReadCoils(0, 1));
        assert_eq!(read_request(regs), Request::ReadHoldingRegisters(0, 12));

        let mut words = vec![0u16; 12];
        words[0..2].copy_from_slice(&f32_words(55.25));
        words[2..4].copy_from_slice(&f32_words(41.0));
        words[4] = 420;
        let [hi, lo] = f32_words(12.5);
        words[6] = lo; // CDAB: low word first
        words[7] = hi;
        words[10] = 0b1001;
        words[11] = 1;
        let mut values = Vec::new();
        let mut errors = Vec::new();
        let data = super::data(Response::ReadHoldingRegisters(words)).unwrap();
        decode(&m, regs, &data, &mut values, &mut errors);
        let bits = super::data(Response::ReadCoils(vec![
            true, false, false, false, false, false, false, false,
        ]))
        .unwrap();
        decode(&m, coils, &bits, &mut values, &mut errors);
        values.sort_by_key(|(i, _)| *i);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            values,
            vec![
                (0, Value::Float(55.25)),
                (1, Value::Float(41.0)),
                (2, Value::Float(12.5)),
                (3, Value::Float(0.42)),
                (4, Value::Bool(true)),
                (5, Value::Str("backup".into())),
                (6, Value::Bool(true)),
            ]
        );
    }

    #[test]
    fn a_bad_value_drops_only_its_signal() {
        let m = model();
        let regs = &m.plan[1];
        let mut words = vec![0u16; 12];
        words[0..2].copy_from_slice(&[0x7FC0, 0]); // NaN
        words[11] = 7; // no 8th enum value
        let mut values = Vec::new();
        let mut errors = Vec::new();
        decode(&m, regs, &Data::Words(words), &mut values, &mut errors);
        assert_eq!(
            errors,
            vec![
                (0, DecodeError::NonFinite),
                (5, DecodeError::NoSuchEnumValue(7))
            ]
        );
        assert_eq!(values.len(), 4);
        // A device that answers with fewer words than asked: the missing ones are errors.
        let mut values = Vec::new();
        let mut errors = Vec::new();
        decode(&m, regs, &Data::Words(vec![0; 3]), &mut values, &mut errors);
        assert_eq!(values, vec![(0, Value::Float(0.0))]);
        assert_eq!(errors.len(), 5);
        assert!(super::data(Response::WriteSingleCoil(0, true)).is_none());
    }
}
