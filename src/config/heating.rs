//! `[heating]`: the heating season in the site's time zone and the indoor minimum, with
//! `[heating.sites.<site>]` for sites in other cities: what heating rules (`season = true`) and
//! the heating KPIs need.

use std::collections::BTreeMap;

use super::check::check_name;
use super::raw::{RawHeating, RawHeatingSite};
use super::Errors;
use crate::core::season::{MonthDay, Season};

/// The `[heating]` section, built.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatingSettings {
    /// The heating season (rules marked `season = true`, heating compliance).
    pub season: Season,
    /// Indoor temperature at or above which a room counts as compliant (供暖达标).
    pub min_indoor_c: f64,
    /// Sites in other cities (`[heating.sites.<site>]`): their own season, time zone and
    /// minimum; keys they do not set follow `[heating]`.
    pub sites: BTreeMap<String, SiteHeating>,
}

/// One `[heating.sites.<site>]`, with unset keys filled in from `[heating]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteHeating {
    pub season: Season,
    pub min_indoor_c: f64,
}

impl Default for HeatingSettings {
    fn default() -> Self {
        HeatingSettings {
            season: Season::beijing(),
            min_indoor_c: 18.0,
            sites: BTreeMap::new(),
        }
    }
}

impl HeatingSettings {
    /// The season (and with it the site's time zone) and indoor minimum of `site`: its
    /// `[heating.sites.<site>]` override, else `[heating]`.
    pub fn for_site(&self, site: &str) -> (&Season, f64) {
        match self.sites.get(site) {
            Some(s) => (&s.season, s.min_indoor_c),
            None => (&self.season, self.min_indoor_c),
        }
    }
}

pub(super) fn build_heating(h: &RawHeating, errs: &mut Errors) -> HeatingSettings {
    let (season, min_indoor_c) = build_season(
        "heating",
        &h.season_start,
        &h.season_end,
        &h.timezone,
        h.min_indoor_c,
        &Season::beijing(),
        errs,
    );
    let mut sites = BTreeMap::new();
    for (site, o) in &h.sites {
        let key = format!("heating.sites.{site}");
        check_name(errs, &key, site, true, true);
        let s = build_site_heating(&key, o, &season, min_indoor_c, errs);
        sites.insert(site.clone(), s);
    }
    HeatingSettings {
        season,
        min_indoor_c,
        sites,
    }
}

fn build_site_heating(
    key: &str,
    o: &RawHeatingSite,
    base: &Season,
    base_min: f64,
    errs: &mut Errors,
) -> SiteHeating {
    let start = o
        .season_start
        .clone()
        .unwrap_or_else(|| base.start.to_string());
    let end = o.season_end.clone().unwrap_or_else(|| base.end.to_string());
    let tz = o.timezone.clone().unwrap_or_else(|| base.tz_name.clone());
    let (season, min_indoor_c) = build_season(
        key,
        &start,
        &end,
        &tz,
        o.min_indoor_c.unwrap_or(base_min),
        base,
        errs,
    );
    SiteHeating {
        season,
        min_indoor_c,
    }
}

/// A season and an indoor minimum under `prefix` (`heating` or `heating.sites.<site>`).
fn build_season(
    prefix: &str,
    start: &str,
    end: &str,
    tz: &str,
    min_indoor_c: f64,
    fallback: &Season,
    errs: &mut Errors,
) -> (Season, f64) {
    let day = |errs: &mut Errors, key: &str, s: &str| match MonthDay::parse(s) {
        Ok(d) => Some(d),
        Err(e) => {
            errs.push(key, e);
            None
        }
    };
    let start = day(errs, &format!("{prefix}.season_start"), start);
    let end = day(errs, &format!("{prefix}.season_end"), end);
    let season = match Season::new(
        start.unwrap_or(fallback.start),
        end.unwrap_or(fallback.end),
        tz,
    ) {
        Ok(s) => s,
        Err(e) => {
            errs.push(format!("{prefix}.timezone"), e);
            fallback.clone()
        }
    };
    if !(min_indoor_c.is_finite() && (0.0..=30.0).contains(&min_indoor_c)) {
        errs.push(
            format!("{prefix}.min_indoor_c"),
            format!(
                "`{min_indoor_c}` is not an indoor minimum; write degrees Celsius between 0 and 30, e.g. 18.0 (the common standard)",
            ),
        );
    }
    (season, min_indoor_c)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_has, errors, load_text};
    use super::*;

    #[test]
    fn heating_season_is_parsed_and_its_mistakes_named() {
        let cfg = load_text(
            "[heating]\nseason_start = \"10-20\"\nseason_end = \"04-20\"\ntimezone = \"Asia/Harbin\"\nmin_indoor_c = 16\n",
            &[],
            &[],
        )
        .expect("valid");
        let h = &cfg.heating;
        assert_eq!(h.season.start, MonthDay { month: 10, day: 20 });
        assert_eq!(h.season.end, MonthDay { month: 4, day: 20 });
        assert_eq!(h.season.tz_name, "Asia/Harbin");
        assert_eq!(h.min_indoor_c, 16.0);

        let all = errors(
            "[heating]\nseason_start = \"11/15\"\nseason_end = \"02-29\"\ntimezone = \"Beijing\"\nmin_indoor_c = 45.0\n",
            &[],
            &[],
        );
        assert_has(
            &all,
            &[
                "heating.season_start: `11/15` is not a month and day; valid: MM-DD such as 11-15",
                "heating.season_end: `02-29`: February 29 does not exist every year",
                "heating.timezone: `Beijing` is not an IANA time zone; valid: names such as Asia/Shanghai",
                "heating.min_indoor_c: `45` is not an indoor minimum; write degrees Celsius between 0 and 30",
            ],
        );
    }
}
