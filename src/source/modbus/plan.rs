//! Poll planning: a device model's registers are merged into as few read requests as the
//! limits allow. Adjacent registers, and registers separated by at most `max_gap` unused
//! addresses, share a request as long as it spans no more than `max_registers` words (125, the
//! protocol limit of function codes 3/4) or `max_bits` bits (2000, function codes 1/2). Reading
//! a few unused addresses is cheaper than another round trip on a 9600-baud line; a device that
//! answers "illegal address" for gaps wants `max_gap = 0`.
//!
//! The plan is computed once at start (and printed by `check-config --verbose`).

use super::map::{Register, Table};

/// Limits of one device model's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_registers: u16,
    pub max_bits: u16,
    pub max_gap: u16,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_registers: 125,
            max_bits: 2000,
            max_gap: 10,
        }
    }
}

/// One read request of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    /// (index of the register in the model, its offset from `start`).
    pub items: Vec<(usize, u16)>,
}

impl ReadRequest {
    /// The Modbus function code of this request.
    pub fn function_code(&self) -> u8 {
        match self.table {
            Table::Coil => 1,
            Table::Discrete => 2,
            Table::Holding => 3,
            Table::Input => 4,
        }
    }
}

/// Merges `registers` into requests. Requests come out ordered by table, then address.
pub fn plan(registers: &[Register], limits: Limits) -> Vec<ReadRequest> {
    let mut order: Vec<usize> = (0..registers.len()).collect();
    order.sort_by_key(|&i| (registers[i].table, registers[i].address));
    let mut out: Vec<ReadRequest> = Vec::new();
    for i in order {
        let r = &registers[i];
        let width = if r.table.is_bits() { 1 } else { r.ty.width() };
        let max = if r.table.is_bits() {
            limits.max_bits
        } else {
            limits.max_registers
        };
        let start = u32::from(r.address);
        let end = start + u32::from(width);
        if let Some(cur) = out.last_mut() {
            let cur_start = u32::from(cur.start);
            let cur_end = cur_start + u32::from(cur.count);
            let gap_ok = start <= cur_end + u32::from(limits.max_gap);
            let new_end = end.max(cur_end);
            if cur.table == r.table && gap_ok && new_end - cur_start <= u32::from(max) {
                cur.count = (new_end - cur_start) as u16;
                cur.items.push((i, r.address - cur.start));
                continue;
            }
        }
        out.push(ReadRequest {
            table: r.table,
            start: r.address,
            count: width,
            items: vec![(i, 0)],
        });
    }
    out
}

/// One line per request, for `check-config --verbose`.
pub fn describe(registers: &[Register], plan: &[ReadRequest]) -> Vec<String> {
    plan.iter()
        .map(|q| {
            let signals: Vec<&str> = q
                .items
                .iter()
                .map(|(i, _)| registers[*i].signal.as_str())
                .collect();
            format!(
                "fc{:02} {} {}..{} ({} {}): {}",
                q.function_code(),
                q.table.name(),
                q.start,
                u32::from(q.start) + u32::from(q.count) - 1,
                q.count,
                if q.table.is_bits() { "bits" } else { "words" },
                signals.join(", ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::map::{Order, RegType};
    use super::*;
    use crate::model::SignalType;

    fn r(table: Table, address: u16, ty: RegType) -> Register {
        Register {
            signal: format!("s{address}"),
            signal_idx: 0,
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
            signal_type: SignalType::Float,
            report: None,
        }
    }

    fn spans(p: &[ReadRequest]) -> Vec<(Table, u16, u16)> {
        p.iter().map(|q| (q.table, q.start, q.count)).collect()
    }

    #[test]
    fn adjacent_and_nearby_registers_share_a_request() {
        let regs = vec![
            r(Table::Holding, 0, RegType::F32),  // 0..2
            r(Table::Holding, 2, RegType::F32),  // 2..4
            r(Table::Holding, 10, RegType::U16), // gap 6 → merged (max_gap 10)
            r(Table::Holding, 40, RegType::U16), // gap 29 → new request
            r(Table::Input, 0, RegType::I16),    // other table → new request
            r(Table::Holding, 11, RegType::Bit(0)),
            r(Table::Holding, 11, RegType::Bit(5)), // same word as above
        ];
        let p = plan(&regs, Limits::default());
        assert_eq!(
            spans(&p),
            vec![
                (Table::Input, 0, 1),
                (Table::Holding, 0, 12),
                (Table::Holding, 40, 1),
            ]
        );
        // Every register appears exactly once, at its offset.
        let mut seen: Vec<usize> = p
            .iter()
            .flat_map(|q| q.items.iter().map(|(i, _)| *i))
            .collect();
        seen.sort();
        assert_eq!(seen, (0..regs.len()).collect::<Vec<_>>());
        assert!(p[1].items.contains(&(2, 10)));
        assert_eq!(p[1].function_code(), 3);
        assert_eq!(p[0].function_code(), 4);
    }

    #[test]
    fn limits_split_requests() {
        // 70 f32 values back to back: 140 words > 125.
        let regs: Vec<Register> = (0..70)
            .map(|i| r(Table::Input, i * 2, RegType::F32))
            .collect();
        let p = plan(&regs, Limits::default());
        assert_eq!(
            spans(&p),
            vec![(Table::Input, 0, 124), (Table::Input, 124, 16)]
        );
        // A value is never split across requests.
        assert!(p.iter().all(|q| q.count % 2 == 0));

        let no_gaps = Limits {
            max_gap: 0,
            ..Limits::default()
        };
        let regs = vec![
            r(Table::Holding, 0, RegType::U16),
            r(Table::Holding, 2, RegType::U16),
        ];
        assert_eq!(plan(&regs, no_gaps).len(), 2);
        assert_eq!(plan(&regs, Limits::default()).len(), 1);

        let coils: Vec<Register> = (0..2500)
            .map(|i| r(Table::Coil, i, RegType::Bool))
            .collect();
        let p = plan(&coils, Limits::default());
        assert_eq!(
            spans(&p),
            vec![(Table::Coil, 0, 2000), (Table::Coil, 2000, 500)]
        );
        assert_eq!(p[0].function_code(), 1);
    }

    #[test]
    fn describe_lists_signals_per_request() {
        let regs = vec![
            r(Table::Holding, 0, RegType::F32),
            r(Table::Holding, 2, RegType::U16),
        ];
        let p = plan(&regs, Limits::default());
        assert_eq!(
            describe(&regs, &p),
            vec!["fc03 holding 0..2 (3 words): s0, s2"]
        );
    }
}
