//! A simulated device's register memory: its four Modbus tables (coils, discrete inputs, input
//! registers, holding registers), sized from its model's register map, and the bridge between
//! the memory and the signal values: `store` encodes a value into the register's words or bit
//! with the gateway's own `Register::encode` (so the simulator and the poller share one
//! implementation of types, scaling and byte/word orders — the tests in `tests/sim.rs` check
//! the words against hand-computed constants as well, so a shared bug cannot hide), and `load`
//! decodes them back after a Modbus write.
//!
//! Each table reaches [`ADDRESS_MARGIN`] addresses past the model's highest register in it;
//! addresses inside that range that no register covers read as 0 (gaps, which a poll plan may
//! read across), and a request reaching beyond it is answered with `IllegalDataAddress`, as a
//! real PLC answers for addresses it does not have. A table the model does not use at all has
//! no addresses.

use tokio_modbus::ExceptionCode;

use crate::model::Value;
use crate::source::modbus::map::{DecodeError, EncodeError, Encoded, Register, Table};

/// How many addresses each used table reaches past the model's highest register in it.
pub const ADDRESS_MARGIN: u16 = 16;

/// Protocol limits per request (Modbus application protocol v1.1b3, §6).
const MAX_READ_WORDS: u16 = 125;
const MAX_READ_BITS: u16 = 2000;
const MAX_WRITE_WORDS: u16 = 123;
const MAX_WRITE_BITS: u16 = 1968;

/// The four tables of one device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Memory {
    coils: Vec<bool>,
    discrete: Vec<bool>,
    input: Vec<u16>,
    holding: Vec<u16>,
}

impl Memory {
    /// Zeroed tables sized for `registers` (see the module docs).
    pub(crate) fn for_registers(registers: &[Register]) -> Memory {
        let size = |table: Table| -> usize {
            registers
                .iter()
                .filter(|r| r.table == table)
                .map(|r| usize::from(r.address) + width(r))
                .max()
                .map_or(0, |end| (end + usize::from(ADDRESS_MARGIN)).min(65_536))
        };
        Memory {
            coils: vec![false; size(Table::Coil)],
            discrete: vec![false; size(Table::Discrete)],
            input: vec![0; size(Table::Input)],
            holding: vec![0; size(Table::Holding)],
        }
    }

    /// Addresses in `table`.
    pub(crate) fn len(&self, table: Table) -> usize {
        match table {
            Table::Coil => self.coils.len(),
            Table::Discrete => self.discrete.len(),
            Table::Input => self.input.len(),
            Table::Holding => self.holding.len(),
        }
    }

    fn bits_mut(&mut self, table: Table) -> &mut Vec<bool> {
        if table == Table::Coil {
            &mut self.coils
        } else {
            &mut self.discrete
        }
    }

    fn words_mut(&mut self, table: Table) -> &mut Vec<u16> {
        if table == Table::Holding {
            &mut self.holding
        } else {
            &mut self.input
        }
    }

    fn bits(&self, table: Table) -> &[bool] {
        if table == Table::Coil {
            &self.coils
        } else {
            &self.discrete
        }
    }

    fn words(&self, table: Table) -> &[u16] {
        if table == Table::Holding {
            &self.holding
        } else {
            &self.input
        }
    }

    /// Reads `count` bits (function codes 1, 2).
    pub(crate) fn read_bits(
        &self,
        table: Table,
        start: u16,
        count: u16,
    ) -> Result<Vec<bool>, ExceptionCode> {
        let range = checked(start, count, MAX_READ_BITS, self.len(table))?;
        Ok(self.bits(table)[range].to_vec())
    }

    /// Reads `count` registers (function codes 3, 4).
    pub(crate) fn read_words(
        &self,
        table: Table,
        start: u16,
        count: u16,
    ) -> Result<Vec<u16>, ExceptionCode> {
        let range = checked(start, count, MAX_READ_WORDS, self.len(table))?;
        Ok(self.words(table)[range].to_vec())
    }

    /// Writes bits (function codes 5, 15; and raw writes of discrete inputs by tests).
    pub(crate) fn write_bits(
        &mut self,
        table: Table,
        start: u16,
        bits: &[bool],
    ) -> Result<(), ExceptionCode> {
        let count = u16::try_from(bits.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
        let len = self.len(table);
        let range = checked(start, count, MAX_WRITE_BITS, len)?;
        self.bits_mut(table)[range].copy_from_slice(bits);
        Ok(())
    }

    /// Writes registers (function codes 6, 16, 22, 23; and raw writes of input registers).
    pub(crate) fn write_words(
        &mut self,
        table: Table,
        start: u16,
        words: &[u16],
    ) -> Result<(), ExceptionCode> {
        let count = u16::try_from(words.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
        let len = self.len(table);
        let range = checked(start, count, MAX_WRITE_WORDS, len)?;
        self.words_mut(table)[range].copy_from_slice(words);
        Ok(())
    }

    /// Encodes `v` into `reg`'s place (a bit of a register keeps the register's other bits).
    pub(crate) fn store(&mut self, reg: &Register, v: &Value) -> Result<(), EncodeError> {
        let at = usize::from(reg.address);
        if reg.table.is_bits() {
            if let (Encoded::Bit(b), Some(slot)) =
                (reg.encode(v, None)?, self.bits_mut(reg.table).get_mut(at))
            {
                *slot = b;
            }
            return Ok(());
        }
        let current = self.words(reg.table).get(at).copied();
        if let Encoded::Words(ws) = reg.encode(v, current)? {
            if let Some(dst) = self.words_mut(reg.table).get_mut(at..at + ws.len()) {
                dst.copy_from_slice(&ws);
            }
        }
        Ok(())
    }

    /// Decodes `reg`'s value from memory.
    pub(crate) fn load(&self, reg: &Register) -> Result<Value, DecodeError> {
        let at = usize::from(reg.address);
        let w = width(reg);
        if reg.table.is_bits() {
            let bit = self.bits(reg.table).get(at).copied().unwrap_or(false);
            return reg.decode_bit(bit);
        }
        match self.words(reg.table).get(at..at + w) {
            Some(ws) => reg.decode_words(ws),
            None => Err(DecodeError::Short { want: w, got: 0 }),
        }
    }
}

/// Addresses `reg` occupies in its table.
pub(crate) fn width(reg: &Register) -> usize {
    if reg.table.is_bits() {
        1
    } else {
        usize::from(reg.ty.width())
    }
}

/// Whether `reg` overlaps `count` addresses from `start` of `table`.
pub(crate) fn overlaps(reg: &Register, table: Table, start: u16, count: usize) -> bool {
    let (a, b) = (
        usize::from(reg.address),
        usize::from(reg.address) + width(reg),
    );
    let (s, e) = (usize::from(start), usize::from(start) + count);
    reg.table == table && a < e && s < b
}

/// The index range of a request, or the exception a device answers: a quantity of 0 or over
/// the protocol limit is `IllegalDataValue`, addresses past the table `IllegalDataAddress`.
fn checked(
    start: u16,
    count: u16,
    max: u16,
    len: usize,
) -> Result<std::ops::Range<usize>, ExceptionCode> {
    if count == 0 || count > max {
        return Err(ExceptionCode::IllegalDataValue);
    }
    let (s, e) = (usize::from(start), usize::from(start) + usize::from(count));
    if e > len {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    Ok(s..e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SignalType;
    use crate::source::modbus::map::{Order, RegType};

    fn reg(table: Table, address: u16, ty: RegType, order: Order) -> Register {
        Register {
            signal: "x".into(),
            signal_idx: 0,
            table,
            address,
            ty,
            order,
            scale: 1.0,
            offset: 0.0,
            values: None,
            writable: true,
            min: None,
            max: None,
            signal_type: if ty.is_boolean() {
                SignalType::Bool
            } else {
                SignalType::Float
            },
            report: None,
        }
    }

    #[test]
    fn tables_are_sized_from_the_map_plus_a_margin() {
        let m = Memory::for_registers(&[
            reg(Table::Holding, 0, RegType::F32, Order::Abcd),
            reg(Table::Holding, 12, RegType::F64, Order::Abcd),
            reg(Table::Coil, 3, RegType::Bool, Order::Abcd),
        ]);
        assert_eq!(m.len(Table::Holding), 16 + usize::from(ADDRESS_MARGIN));
        assert_eq!(m.len(Table::Coil), 4 + usize::from(ADDRESS_MARGIN));
        assert_eq!(m.len(Table::Input), 0);
        assert_eq!(m.read_words(Table::Holding, 2, 10), Ok(vec![0; 10]));
        assert_eq!(
            m.read_words(Table::Holding, 30, 3),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            m.read_words(Table::Input, 0, 1),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            m.read_words(Table::Holding, 0, 0),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(
            m.read_words(Table::Holding, 0, 126),
            Err(ExceptionCode::IllegalDataValue)
        );
    }

    #[test]
    fn store_and_load_round_trip_and_bits_keep_their_neighbours() {
        let r = reg(Table::Holding, 2, RegType::F32, Order::Cdab);
        let b0 = reg(Table::Holding, 10, RegType::Bit(0), Order::Abcd);
        let b3 = reg(Table::Holding, 10, RegType::Bit(3), Order::Abcd);
        let mut m = Memory::for_registers(&[r.clone(), b0.clone(), b3.clone()]);
        m.store(&r, &Value::Float(25.0)).unwrap();
        assert_eq!(m.read_words(Table::Holding, 2, 2), Ok(vec![0x0000, 0x41C8]));
        assert_eq!(m.load(&r), Ok(Value::Float(25.0)));
        m.store(&b3, &Value::Bool(true)).unwrap();
        m.store(&b0, &Value::Bool(true)).unwrap();
        assert_eq!(m.read_words(Table::Holding, 10, 1), Ok(vec![0b1001]));
        m.store(&b3, &Value::Bool(false)).unwrap();
        assert_eq!(m.read_words(Table::Holding, 10, 1), Ok(vec![0b0001]));
        assert!(overlaps(&r, Table::Holding, 3, 1));
        assert!(!overlaps(&r, Table::Holding, 4, 5));
        assert!(!overlaps(&r, Table::Input, 2, 2));
    }
}
