//! The figures of one site over one period, from the journal.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::kpi::{HeatingTime, OfflinePolicy, StateTime};
use crate::core::response::ResponseSummary;
use crate::core::season::Season;
use crate::sink::journal::Journal;

/// What the figures depend on besides the journal.
#[derive(Debug, Clone)]
pub struct FigureSettings {
    /// How offline time counts in intactness (`[assessment] offline`).
    pub offline: OfflinePolicy,
    /// The site's heating season and time zone.
    pub season: Season,
    /// `heating.min_indoor_c` (reported; compliance itself was decided by the engine).
    pub min_indoor_c: f64,
}

/// Intactness of a set of devices: their summed state time and its rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Intactness {
    /// Σ intact / Σ (period − maintenance − unmonitored [− offline]); `None`: nothing to rate.
    pub rate: Option<f64>,
    pub devices: u64,
    /// Milliseconds, summed over the devices.
    #[serde(skip)]
    pub time: StateTime,
}

/// Heating compliance of a set of indoor sensors.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Heating {
    /// compliant time / online in-season time; `None`: no online sensor time in season.
    pub compliance: Option<f64>,
    /// online in-season time / in-season time.
    pub coverage: Option<f64>,
    pub sensors: u64,
    /// Mean of the sensors' hourly means (°C), when any.
    pub avg_indoor_c: Option<f64>,
    #[serde(skip)]
    pub time: HeatingTime,
}

/// A heating loop's temperatures over the period (means of its hourly means).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Loop {
    pub building: String,
    pub supply_c: Option<f64>,
    pub return_c: Option<f64>,
    /// supply − return.
    pub delta_t_c: Option<f64>,
}

/// Everything `report` needs, before the scorecard.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub site: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// The figures stop at `now` (the period has not ended).
    pub partial: bool,
    pub intactness: Intactness,
    pub intactness_by_category: BTreeMap<String, Intactness>,
    pub intactness_by_building: BTreeMap<String, Intactness>,
    /// Instantaneous count rate at the end of the period: (intact, total, rate).
    pub instant: (u64, u64, Option<f64>),
    pub response: ResponseSummary,
    pub response_by_category: BTreeMap<String, ResponseSummary>,
    /// By (category, severity).
    pub response_by_class: BTreeMap<(String, String), ResponseSummary>,
    /// In-season part of the period only; all `None` when the period has no season time.
    pub heating: Heating,
    pub heating_by_building: BTreeMap<String, Heating>,
    /// By loop device id.
    pub loops: BTreeMap<String, Loop>,
}

/// The figures of `site` over [from_ms, to_ms), judged at min(to_ms, now_ms).
pub fn compute(
    journal: &Journal,
    site: &str,
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
    settings: &FigureSettings,
) -> anyhow::Result<Figures> {
    let _ = (journal, settings);
    Ok(Figures {
        site: site.into(),
        from_ms,
        to_ms: to_ms.min(now_ms),
        partial: now_ms < to_ms,
        ..Default::default()
    })
}
