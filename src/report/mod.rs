//! Graded figures and assessments (DESIGN §4, issue "Graded figures and assessments"): what
//! `estate-gateway report` prints and what the periodic `intactness`, `response` and `heating`
//! points carry, all computed from the journal (`crate::journal`) with the time-weighted
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

use std::path::Path;

use anyhow::Context as _;

use crate::config::{Grade, HeatingSettings, KpiSettings};
use crate::core::kpi::OfflinePolicy;

impl FigureSettings {
    /// A site's settings: its season and minimum indoor temperature (`[heating]`, or its
    /// `[heating.sites.<site>]`) and how offline time counts (`[assessment] offline`).
    pub fn for_site(heating: &HeatingSettings, offline: OfflinePolicy, site: &str) -> Self {
        let (season, min_indoor_c) = heating.for_site(site);
        FigureSettings {
            offline,
            season: season.clone(),
            min_indoor_c,
        }
    }
}

/// The figures and the scorecard of `site` over `period`, judged at `now_ms`, from the journal
/// file at `path` opened read-only: what `report`, `GET /api/report` and the closed-month
/// `assessment` points share. Blocking (SQLite); errors name the file.
pub fn score(
    path: &Path,
    site: &str,
    period: &Period,
    now_ms: i64,
    settings: &FigureSettings,
    kpis: &[KpiSettings],
    grades: &[Grade],
) -> anyhow::Result<(Figures, Scorecard)> {
    let journal = crate::journal::Journal::open_read_only(path)?;
    let figures = compute(
        &journal,
        site,
        period.from_ms,
        period.to_ms,
        now_ms,
        settings,
    )
    .with_context(|| format!("reading the journal {}", path.display()))?;
    let card = scorecard(&figures, kpis, grades, settings.offline);
    Ok((figures, card))
}
