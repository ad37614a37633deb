//! MQTT topic patterns with `{site}`, `{category}` and `{device}` placeholders (DESIGN §6).
//!
//! A pattern such as `estate/{site}/{category}/{device}/telemetry` becomes the subscription
//! filter `estate/+/+/+/telemetry` and matches incoming topics segment by segment, capturing
//! the placeholders. A placeholder fills a whole segment; `{device}` is required.
//!
//! An MQTT 5 shared subscription is written as a prefix: `$share/{group}/estate/{site}/…`.
//! The prefix is part of the subscription filter only; messages arrive on (and are matched
//! and rendered as) the topic without it.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Site,
    Category,
    Device,
}

/// A parsed topic pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    /// The group of a shared subscription (`$share/{group}/…`, MQTT 5).
    share: Option<String>,
    segments: Vec<Segment>,
}

/// The placeholders captured from one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicMatch<'a> {
    pub site: Option<&'a str>,
    pub category: Option<&'a str>,
    pub device: &'a str,
}

/// Why a pattern is not valid; the message says what would be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicPatternError {
    #[error("has no `{{device}}` placeholder; a pattern must name the device, e.g. `estate/{{site}}/{{category}}/{{device}}/telemetry`")]
    NoDevice,
    #[error("unknown placeholder `{0}`; valid are `{{site}}`, `{{category}}`, `{{device}}`")]
    UnknownPlaceholder(String),
    #[error("placeholder `{0}` appears twice")]
    Repeated(String),
    #[error("segment `{0}` mixes a placeholder with text; a placeholder must fill a whole segment between `/`")]
    Partial(String),
    #[error("segment `{0}` holds an MQTT wildcard; write placeholders instead of `+` and `#`")]
    Wildcard(String),
    #[error("is empty")]
    Empty,
    #[error("starts a shared subscription without a group and topic; write `$share/<group>/estate/{{site}}/{{category}}/{{device}}/telemetry`")]
    ShareGroup,
}

impl TopicPattern {
    pub fn parse(pattern: &str) -> Result<Self, TopicPatternError> {
        if pattern.is_empty() {
            return Err(TopicPatternError::Empty);
        }
        let (share, pattern) = match pattern.strip_prefix("$share/") {
            Some(rest) => match rest.split_once('/') {
                Some((group, topic))
                    if !group.is_empty()
                        && !topic.is_empty()
                        && !group.contains(['+', '#', '{', '}']) =>
                {
                    (Some(group.to_owned()), topic)
                }
                _ => return Err(TopicPatternError::ShareGroup),
            },
            None => (None, pattern),
        };
        let mut segments = Vec::new();
        for seg in pattern.split('/') {
            let s = match seg {
                "{site}" => Segment::Site,
                "{category}" => Segment::Category,
                "{device}" => Segment::Device,
                s if s.starts_with('{') && s.ends_with('}') => {
                    return Err(TopicPatternError::UnknownPlaceholder(s.to_owned()))
                }
                s if s.contains('{') || s.contains('}') => {
                    return Err(TopicPatternError::Partial(s.to_owned()))
                }
                s if s.contains('+') || s.contains('#') => {
                    return Err(TopicPatternError::Wildcard(s.to_owned()))
                }
                s => Segment::Literal(s.to_owned()),
            };
            if !matches!(s, Segment::Literal(_)) && segments.contains(&s) {
                return Err(TopicPatternError::Repeated(seg.to_owned()));
            }
            segments.push(s);
        }
        if !segments.contains(&Segment::Device) {
            return Err(TopicPatternError::NoDevice);
        }
        Ok(TopicPattern { share, segments })
    }

    /// A pattern with at most `{site}` (the acknowledgment topics); matched with
    /// `matches_site`. `None` when it holds anything else than literals and `{site}`.
    pub fn parse_site_only(pattern: &str) -> Option<Self> {
        let mut segments = Vec::new();
        for seg in pattern.split('/') {
            segments.push(match seg {
                "{site}" if !segments.contains(&Segment::Site) => Segment::Site,
                s if s.contains(['{', '}', '+', '#']) => return None,
                s => Segment::Literal(s.to_owned()),
            });
        }
        Some(TopicPattern {
            share: None,
            segments,
        })
    }

    /// Whether the pattern captures the site (else devices are looked up by id alone).
    pub fn has_site(&self) -> bool {
        self.segments.contains(&Segment::Site)
    }

    /// The MQTT subscription filter: each placeholder becomes `+` (with the `$share/{group}/`
    /// prefix of a shared subscription).
    pub fn filter(&self) -> String {
        match &self.share {
            Some(group) => format!("$share/{group}/{}", self.render("+", "+", "+")),
            None => self.render("+", "+", "+"),
        }
    }

    /// The subscription filter of a gateway whose inventory holds one site: `{site}` is that
    /// site, so on a broker shared by many estates (a fleet's central broker) it receives its
    /// own estate's messages only. With `None` (several sites) the same as `filter`.
    pub fn filter_for_site(&self, site: Option<&str>) -> String {
        let Some(site) = site.filter(|s| !s.is_empty() && !s.contains(['+', '#', '/'])) else {
            return self.filter();
        };
        let topic = self.render(site, "+", "+");
        match &self.share {
            Some(group) => format!("$share/{group}/{topic}"),
            None => topic,
        }
    }

    /// The group of a shared subscription (`$share/{group}/…`), if it is one.
    pub fn share_group(&self) -> Option<&str> {
        self.share.as_deref()
    }

    /// The topic for given values (used for outgoing topics and by tests and the simulator).
    pub fn render(&self, site: &str, category: &str, device: &str) -> String {
        let parts: Vec<&str> = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.as_str(),
                Segment::Site => site,
                Segment::Category => category,
                Segment::Device => device,
            })
            .collect();
        parts.join("/")
    }

    /// Matches a topic against a pattern that has no `{device}` (the acknowledgment topics),
    /// returning the `{site}` it captured, if it has one: `Some(None)` for a match without a
    /// site placeholder.
    pub fn matches_site<'a>(&self, topic: &'a str) -> Option<Option<&'a str>> {
        let mut site = None;
        let mut parts = topic.split('/');
        for seg in &self.segments {
            let part = parts.next()?;
            match seg {
                Segment::Literal(l) if l == part => {}
                Segment::Site => site = Some(part),
                _ => return None,
            }
        }
        if parts.next().is_some() {
            return None;
        }
        Some(site)
    }

    /// Matches a concrete topic, capturing the placeholders.
    pub fn matches<'a>(&self, topic: &'a str) -> Option<TopicMatch<'a>> {
        let mut site = None;
        let mut category = None;
        let mut device = None;
        let mut parts = topic.split('/');
        for seg in &self.segments {
            let part = parts.next()?;
            match seg {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Site => site = Some(part),
                Segment::Category => category = Some(part),
                Segment::Device => device = Some(part),
            }
        }
        if parts.next().is_some() {
            return None;
        }
        Some(TopicMatch {
            site,
            category,
            device: device?,
        })
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(group) = &self.share {
            write!(f, "$share/{group}/")?;
        }
        f.write_str(&self.render("{site}", "{category}", "{device}"))
    }
}

/// The topic of a gateway's summaries (README "Fleet"): literal segments, a whole-segment
/// `{site}` (required) and, for the scorecards, a whole-segment `{period}` (required there,
/// not allowed in the live-figures topic). E.g. `estate/{site}/kpi`,
/// `estate/{site}/assessment/{period}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryTopic {
    /// The pattern as written.
    pattern: String,
}

impl SummaryTopic {
    /// Parses a pattern; `period`: whether it is the scorecard topic (`{period}` required).
    pub fn parse(pattern: &str, period: bool) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("is empty".into());
        }
        let (mut site, mut per) = (0, 0);
        for seg in pattern.split('/') {
            match seg {
                "{site}" => site += 1,
                "{period}" if period => per += 1,
                s if s.contains(['{', '}']) => {
                    let valid = if period {
                        "`{site}` and `{period}`"
                    } else {
                        "`{site}`"
                    };
                    return Err(format!(
                        "has `{s}`; the placeholders here are {valid}, each filling a whole segment"
                    ));
                }
                s if s.contains(['+', '#']) => {
                    return Err(format!(
                        "has the MQTT wildcard in `{s}`; write `{{site}}` instead of `+`"
                    ))
                }
                _ => {}
            }
        }
        if site != 1 {
            return Err("must hold `{site}` exactly once (e.g. `estate/{site}/kpi`)".into());
        }
        if period && per != 1 {
            return Err(
                "must hold `{period}` exactly once (e.g. `estate/{site}/assessment/{period}`)"
                    .into(),
            );
        }
        Ok(SummaryTopic {
            pattern: pattern.to_owned(),
        })
    }

    /// `estate/{site}/kpi`.
    pub fn default_kpi() -> Self {
        SummaryTopic {
            pattern: "estate/{site}/kpi".into(),
        }
    }

    /// `estate/{site}/assessment/{period}`.
    pub fn default_assessment() -> Self {
        SummaryTopic {
            pattern: "estate/{site}/assessment/{period}".into(),
        }
    }

    /// The topic for a site (and period, ignored by the live-figures topic).
    pub fn render(&self, site: &str, period: &str) -> String {
        self.pattern
            .split('/')
            .map(|seg| match seg {
                "{site}" => site,
                "{period}" => period,
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The subscription filter: each placeholder becomes `+`.
    pub fn filter(&self) -> String {
        self.render("+", "+")
    }

    /// The site and period (empty when the pattern has none) of a topic that matches.
    pub fn matches<'a>(&self, topic: &'a str) -> Option<(&'a str, &'a str)> {
        let (p, t): (Vec<&str>, Vec<&str>) = (
            self.pattern.split('/').collect(),
            topic.split('/').collect(),
        );
        if p.len() != t.len() {
            return None;
        }
        let (mut site, mut period) = (None, "");
        for (a, b) in p.iter().zip(&t) {
            match *a {
                "{site}" if !b.is_empty() => site = Some(*b),
                "{period}" if !b.is_empty() => period = b,
                "{site}" | "{period}" => return None,
                lit if lit != *b => return None,
                _ => {}
            }
        }
        site.map(|s| (s, period))
    }
}

impl fmt::Display for SummaryTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_site_gateway_subscribes_to_its_own_site_only() {
        let t = TopicPattern::parse("estate/{site}/{category}/{device}/telemetry").unwrap();
        assert_eq!(t.filter_for_site(Some("东苑")), "estate/东苑/+/+/telemetry");
        assert_eq!(t.filter_for_site(None), "estate/+/+/+/telemetry");
        // A site that is not a plain topic level keeps the wildcard.
        assert_eq!(t.filter_for_site(Some("a/b")), "estate/+/+/+/telemetry");
        let shared =
            TopicPattern::parse("$share/pair/estate/{site}/{category}/{device}/status").unwrap();
        assert_eq!(
            shared.filter_for_site(Some("s1")),
            "$share/pair/estate/s1/+/+/status"
        );
        let ack = TopicPattern::parse_site_only("estate/{site}/alarms/ack").unwrap();
        assert_eq!(ack.filter_for_site(Some("s1")), "estate/s1/alarms/ack");
    }

    #[test]
    fn a_shared_subscription_prefix_is_in_the_filter_only() {
        let p =
            TopicPattern::parse("$share/pair/estate/{site}/{category}/{device}/telemetry").unwrap();
        assert_eq!(p.share_group(), Some("pair"));
        assert_eq!(p.filter(), "$share/pair/estate/+/+/+/telemetry");
        assert_eq!(
            p.render("s", "c", "d"),
            "estate/s/c/d/telemetry",
            "messages are published and arrive without the prefix"
        );
        let m = p.matches("estate/s/c/d/telemetry").unwrap();
        assert_eq!((m.site, m.category, m.device), (Some("s"), Some("c"), "d"));
        assert_eq!(
            p.to_string(),
            "$share/pair/estate/{site}/{category}/{device}/telemetry"
        );
        for bad in [
            "$share/",
            "$share/pair",
            "$share//estate/{device}",
            "$share/+/x/{device}",
        ] {
            assert_eq!(
                TopicPattern::parse(bad),
                Err(TopicPatternError::ShareGroup),
                "{bad}"
            );
        }
        assert_eq!(
            TopicPattern::parse("$share/pair/estate/x"),
            Err(TopicPatternError::NoDevice)
        );
    }

    #[test]
    fn summary_topics_render_filter_and_match() {
        let k = SummaryTopic::parse("estate/{site}/kpi", false).unwrap();
        assert_eq!(k.render("锦绣", "x"), "estate/锦绣/kpi");
        assert_eq!(k.filter(), "estate/+/kpi");
        assert_eq!(k.matches("estate/锦绣/kpi"), Some(("锦绣", "")));
        assert_eq!(k.matches("estate/锦绣/kpi/x"), None);
        let a = SummaryTopic::parse("estate/{site}/assessment/{period}", true).unwrap();
        assert_eq!(a.filter(), "estate/+/assessment/+");
        assert_eq!(
            a.matches("estate/s1/assessment/2026Q4"),
            Some(("s1", "2026Q4"))
        );
        assert_eq!(a.matches("estate/s1/kpi/2026Q4"), None);
        assert!(SummaryTopic::parse("estate/{site}/assessment", true).is_err());
        assert!(SummaryTopic::parse("estate/{site}/{period}", false).is_err());
        assert!(SummaryTopic::parse("estate/+/kpi", false).is_err());
        assert!(SummaryTopic::parse("estate/kpi", false).is_err());
        assert!(SummaryTopic::parse("estate/s-{site}/kpi", false).is_err());
    }

    #[test]
    fn default_pattern_filters_and_matches() {
        let p = TopicPattern::parse("estate/{site}/{category}/{device}/telemetry").unwrap();
        assert_eq!(p.filter(), "estate/+/+/+/telemetry");
        assert_eq!(
            p.matches("estate/hx/elevator/E1/telemetry"),
            Some(TopicMatch {
                site: Some("hx"),
                category: Some("elevator"),
                device: "E1"
            })
        );
        assert_eq!(p.matches("estate/hx/elevator/E1/status"), None);
        assert_eq!(p.matches("estate/hx/elevator/E1/telemetry/x"), None);
        assert_eq!(p.matches("estate/hx/elevator"), None);
        assert_eq!(p.to_string(), "estate/{site}/{category}/{device}/telemetry");
        assert_eq!(
            p.render("hx", "elevator", "E1"),
            "estate/hx/elevator/E1/telemetry"
        );
    }

    #[test]
    fn device_only_pattern() {
        let p = TopicPattern::parse("plant/{device}").unwrap();
        assert!(!p.has_site());
        assert_eq!(p.matches("plant/P-7").unwrap().device, "P-7");
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        assert_eq!(
            TopicPattern::parse("estate/{site}/x"),
            Err(TopicPatternError::NoDevice)
        );
        assert_eq!(
            TopicPattern::parse("estate/{dev}/x"),
            Err(TopicPatternError::UnknownPlaceholder("{dev}".into()))
        );
        assert_eq!(
            TopicPattern::parse("estate/dev-{device}"),
            Err(TopicPatternError::Partial("dev-{device}".into()))
        );
        assert_eq!(
            TopicPattern::parse("estate/+/{device}"),
            Err(TopicPatternError::Wildcard("+".into()))
        );
        assert_eq!(
            TopicPattern::parse("{device}/{device}"),
            Err(TopicPatternError::Repeated("{device}".into()))
        );
        assert!(TopicPattern::parse("")
            .unwrap_err()
            .to_string()
            .contains("empty"));
    }
}
