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
//! - `live`: the periodic `intactness`, `response`, `heating` points and `GET /api/kpi`;
//! - `device`: one device's figures (`report --device`, `GET /api/devices/{id}/figures`) and
//!   the site report's worst devices;
//! - `fire`: the site report's fire alarm counts.

pub mod device;
pub mod figures;
pub mod fire;
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
use crate::journal::Journal;

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
    let journal = Journal::open_read_only(path)?;
    score_in(&journal, site, period, now_ms, settings, kpis, grades)
}

/// The site report's sections after the scorecard: the worst devices and the fire alarms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sections {
    pub worst_devices: device::WorstDevices,
    pub fire_alarms: fire::FireAlarms,
}

impl Sections {
    /// For `format::Report::sections`.
    pub fn list(&self) -> [&dyn format::Section; 2] {
        [&self.worst_devices, &self.fire_alarms]
    }
}

/// `score` and the report's `Sections`, from one read-only open of the journal at `path`:
/// what `report` and `GET /api/report` print.
pub fn score_with_sections(
    path: &Path,
    site: &str,
    period: &Period,
    now_ms: i64,
    settings: &FigureSettings,
    kpis: &[KpiSettings],
    grades: &[Grade],
) -> anyhow::Result<(Figures, Scorecard, Sections)> {
    let journal = Journal::open_read_only(path)?;
    let (figures, card) = score_in(&journal, site, period, now_ms, settings, kpis, grades)?;
    let (from, to) = (period.from_ms, period.to_ms);
    let (worst_devices, fire_alarms) =
        device::worst_devices(&journal, site, from, to, now_ms, settings, device::WORST_N)
            .and_then(|w| Ok((w, fire::fire_alarms(&journal, site, from, to, now_ms)?)))
            .with_context(|| format!("reading the journal {}", path.display()))?;
    let sections = Sections {
        worst_devices,
        fire_alarms,
    };
    Ok((figures, card, sections))
}

fn score_in(
    journal: &Journal,
    site: &str,
    period: &Period,
    now_ms: i64,
    settings: &FigureSettings,
    kpis: &[KpiSettings],
    grades: &[Grade],
) -> anyhow::Result<(Figures, Scorecard)> {
    let path = journal.path();
    let figures = compute(
        journal,
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
