//! Graded figures and assessments (DESIGN §4, issue "Graded figures and assessments"): what
//! `estate-gateway report` prints and what the periodic `intactness`, `response` and `heating`
//! points carry, all computed from the journal (`crate::sink::journal`) with the time-weighted
//! machinery of `crate::core::kpi` and the timeliness rules of `crate::core::response`.
//!
//! - `figures`: `compute` — the figures of one site over one period [from, to);
//! - `period`: `2026-11`, `2026Q4`, `2026`, `heating-2026`, `--from/--to` → [from, to) in the
//!   site's time zone;
//! - `scorecard`: KPIs with targets, weights and deductions, grade bands;
//! - `format`: table, JSON and CSV output;
//! - `publish`: `assessment` points for the store (`report --publish`);
//! - `live`: the periodic `intactness`, `response`, `heating` points and `GET /api/kpi`.

pub mod figures;
pub mod format;
pub mod live;
pub mod period;
pub mod publish;
pub mod scorecard;

pub use figures::{compute, FigureSettings, Figures};
pub use period::{Period, PeriodError};
pub use scorecard::{scorecard, KpiScore, Scorecard};
