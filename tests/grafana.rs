//! The Grafana dashboards in `dashboards/` against the store schema (DESIGN §5): every Flux
//! query's measurements, fields and columns must exist in `estate_gateway::schema`
//! (`estate-gateway schema`), with `telemetry` fields being signals of the built-in profiles
//! (of the category the query names, when it names one). So a schema change cannot silently
//! break a panel: this test names the dashboard, the panel and the unknown name.
//!
//! It also checks that each file is a well-formed Grafana dashboard as provisioned by
//! `dashboards/provisioning/`: a unique uid, the `bucket` and `site` variables, every panel with
//! a type, a title, a gridPos inside the 24-column grid, and the provisioned data source.
//!
//! The Flux reading is deliberately small: a tokenizer that knows strings, regex literals and
//! Grafana's `${var}`, and the patterns the dashboards use — `r._measurement == "X"`,
//! `r._field == "Y"`, `r["col"]`, `contains(value: r.col, set: [...])`, and the column lists of
//! `group`, `pivot`, `keep`, `drop`, `sort`, `distinct`, `count` and `tagValues`. Columns a
//! query makes itself (record keys in `map`/`reduce`) are allowed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The uid of the provisioned data source (`dashboards/provisioning/datasources/estate.yaml`).
const DATASOURCE_UID: &str = "estate-influxdb";

/// Columns every Flux table has besides tags and fields.
const STANDARD_COLUMNS: &[&str] = &[
    "_measurement",
    "_field",
    "_value",
    "_time",
    "_start",
    "_stop",
];

/// Panel types the dashboards may use (all built into Grafana).
const PANEL_TYPES: &[&str] = &[
    "row",
    "stat",
    "gauge",
    "bargauge",
    "timeseries",
    "table",
    "barchart",
    "state-timeline",
    "piechart",
    "text",
];

/// Function parameters that name columns.
const COLUMN_PARAMS: &[&str] = &["columns", "rowKey", "columnKey", "valueColumn", "column"];

/// Functions whose column parameters are checked.
const COLUMN_FUNCTIONS: &[&str] = &[
    "group", "pivot", "keep", "drop", "sort", "distinct", "count", "unique",
];

/// The store schema as the test sees it.
struct Schema {
    /// measurement → (tags, fields)
    measurements: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>,
    /// category → signals of its built-in profile
    profiles: BTreeMap<String, BTreeSet<String>>,
}

fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards")
}

/// `estate_gateway::schema::measurements()`, with `telemetry`'s placeholder replaced by the
/// signals of the built-in profiles (loaded through the config loader from the shipped
/// `configs/gateway.toml`, which adds no profiles of its own).
fn schema() -> Schema {
    let cfg = estate_gateway::config::load_with_env(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/gateway.toml"),
        HashMap::new(),
    )
    .unwrap_or_else(|e| panic!("configs/gateway.toml does not load: {e}"));
    let profiles: BTreeMap<String, BTreeSet<String>> = cfg
        .profiles
        .iter()
        .map(|(cat, p)| {
            (
                cat.clone(),
                p.signals.iter().map(|s| s.name.clone()).collect(),
            )
        })
        .collect();
    assert!(profiles.contains_key("indoor_sensor") && profiles.contains_key("heating_loop"));
    let mut measurements = BTreeMap::new();
    for m in estate_gateway::schema::measurements() {
        let tags = m.tags.iter().map(|t| (*t).to_owned()).collect();
        let mut fields: BTreeSet<String> = m
            .fields
            .iter()
            .filter(|f| !f.starts_with('<'))
            .cloned()
            .collect();
        if m.name == "telemetry" {
            fields.extend(profiles.values().flatten().cloned());
        }
        measurements.insert(m.name.to_owned(), (tags, fields));
    }
    Schema {
        measurements,
        profiles,
    }
}

// ---------------------------------------------------------------------------------------------
// A small Flux tokenizer.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// Identifiers and number fragments.
    Word(String),
    /// A string literal's raw content.
    Str(String),
    /// A regex literal (after `=~` / `!~`), content dropped.
    Regex,
    /// A Grafana variable outside a string (`${category:json}`).
    Var,
    /// Operators and punctuation: `==`, `=~`, `!~`, `=>`, `|>`, or one character.
    Punct(String),
}

fn tokenize(q: &str) -> Vec<Tok> {
    let c: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '"' {
            let mut s = String::new();
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' && i + 1 < c.len() {
                    s.push(c[i]);
                    i += 1;
                }
                s.push(c[i]);
                i += 1;
            }
            i += 1;
            out.push(Tok::Str(s));
        } else if ch == '$' && c.get(i + 1) == Some(&'{') {
            while i < c.len() && c[i] != '}' {
                i += 1;
            }
            i += 1;
            out.push(Tok::Var);
        } else if ch == '/' && matches!(out.last(), Some(Tok::Punct(p)) if p == "=~" || p == "!~") {
            i += 1;
            while i < c.len() && c[i] != '/' {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push(Tok::Regex);
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Tok::Word(c[start..i].iter().collect()));
        } else {
            let two: String = c[i..(i + 2).min(c.len())].iter().collect();
            if ["==", "=~", "!~", "=>", "|>", "!=", "<=", ">="].contains(&two.as_str()) {
                out.push(Tok::Punct(two));
                i += 2;
            } else {
                out.push(Tok::Punct(ch.to_string()));
                i += 1;
            }
        }
    }
    out
}

fn is_punct(t: Option<&Tok>, p: &str) -> bool {
    matches!(t, Some(Tok::Punct(x)) if x == p)
}

fn is_word(t: Option<&Tok>, w: &str) -> bool {
    matches!(t, Some(Tok::Word(x)) if x == w)
}

/// The column a reference at `i` names (`r.col` or `r["col"]`), and the index after it.
fn column_ref(t: &[Tok], i: usize) -> Option<(String, usize)> {
    if !is_word(t.get(i), "r") || is_punct(i.checked_sub(1).and_then(|j| t.get(j)), ".") {
        return None;
    }
    match (t.get(i + 1), t.get(i + 2), t.get(i + 3)) {
        (Some(Tok::Punct(d)), Some(Tok::Word(col)), _) if d == "." => Some((col.clone(), i + 3)),
        (Some(Tok::Punct(b)), Some(Tok::Str(col)), Some(Tok::Punct(e))) if b == "[" && e == "]" => {
            Some((col.clone(), i + 4))
        }
        _ => None,
    }
}

/// The index of the parenthesis closing the one at `open`.
fn closing(t: &[Tok], open: usize) -> usize {
    let mut depth = 0;
    for (j, tok) in t.iter().enumerate().skip(open) {
        match tok {
            Tok::Punct(p) if p == "(" || p == "[" || p == "{" => depth += 1,
            Tok::Punct(p) if p == ")" || p == "]" || p == "}" => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    t.len()
}

/// The string literals of a list `[ "a", "b" ]` starting at `i`, or of a single string.
fn strings_at(t: &[Tok], i: usize) -> Vec<String> {
    match t.get(i) {
        Some(Tok::Str(s)) => vec![s.clone()],
        Some(Tok::Punct(p)) if p == "[" => t[i..closing(t, i).min(t.len())]
            .iter()
            .filter_map(|x| match x {
                Tok::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// One `filter(...)` or `tagValues(...)` call: what it compares together.
#[derive(Debug, Default)]
struct Scope {
    measurements: Vec<String>,
    fields: Vec<String>,
    categories: Vec<String>,
}

/// What a Flux query refers to.
#[derive(Debug, Default)]
struct Refs {
    scopes: Vec<Scope>,
    measurements: BTreeSet<String>,
    /// Columns referenced, with how (for the message).
    columns: Vec<(String, &'static str)>,
    /// Columns the query makes itself (record keys).
    defined: BTreeSet<String>,
}

/// The literals compared with column `col` in `t` (`r.col == "x"`,
/// `contains(value: r.col, set: [...])`).
fn literals_of(t: &[Tok], col: &str) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..t.len() {
        if let Some((c, next)) = column_ref(t, i) {
            if c == col && is_punct(t.get(next), "==") {
                if let Some(Tok::Str(s)) = t.get(next + 1) {
                    out.push(s.clone());
                }
            }
        }
        if is_word(t.get(i), "contains") && is_punct(t.get(i + 1), "(") {
            let end = closing(t, i + 1);
            let args = &t[i + 2..end.min(t.len())];
            let names_col = args
                .windows(3)
                .any(|w| is_word(w.first(), "value") && is_punct(w.get(1), ":"))
                && (0..args.len()).any(|j| matches!(column_ref(args, j), Some((c, _)) if c == col));
            if names_col {
                for j in 0..args.len() {
                    if is_word(args.get(j), "set") && is_punct(args.get(j + 1), ":") {
                        out.extend(strings_at(args, j + 2));
                    }
                }
            }
        }
    }
    out
}

fn flux_refs(q: &str) -> Refs {
    let t = tokenize(q);
    let mut refs = Refs::default();
    let mut brackets: Vec<&str> = Vec::new();
    for i in 0..t.len() {
        // Scopes: filter(...) and schema.tagValues(...).
        if (is_word(t.get(i), "filter") || is_word(t.get(i), "tagValues"))
            && is_punct(t.get(i + 1), "(")
        {
            let span = &t[i + 1..=closing(&t, i + 1).min(t.len() - 1)];
            let scope = Scope {
                measurements: literals_of(span, "_measurement"),
                fields: literals_of(span, "_field"),
                categories: literals_of(span, "category"),
            };
            refs.measurements.extend(scope.measurements.iter().cloned());
            refs.scopes.push(scope);
            if is_word(t.get(i), "tagValues") {
                let args = &t[i + 1..=closing(&t, i + 1).min(t.len() - 1)];
                for j in 0..args.len() {
                    if is_word(args.get(j), "tag") && is_punct(args.get(j + 1), ":") {
                        for s in strings_at(args, j + 2) {
                            refs.columns.push((s, "tagValues(tag:)"));
                        }
                    }
                }
            }
        }
        // Column references r.col / r["col"].
        if let Some((col, _)) = column_ref(&t, i) {
            refs.columns.push((col, "r.<column>"));
        }
        // Column lists of group/pivot/keep/...
        if let Some(Tok::Word(f)) = t.get(i) {
            if COLUMN_FUNCTIONS.contains(&f.as_str()) && is_punct(t.get(i + 1), "(") {
                let end = closing(&t, i + 1).min(t.len());
                let args = &t[i + 2..end];
                let mut depth = 0;
                for j in 0..args.len() {
                    match &args[j] {
                        Tok::Punct(p) if p == "(" || p == "[" || p == "{" => depth += 1,
                        Tok::Punct(p) if p == ")" || p == "]" || p == "}" => depth -= 1,
                        Tok::Word(param)
                            if depth == 0
                                && COLUMN_PARAMS.contains(&param.as_str())
                                && is_punct(args.get(j + 1), ":") =>
                        {
                            for s in strings_at(args, j + 2) {
                                let how: &'static str = match f.as_str() {
                                    "group" => "group(columns:)",
                                    "pivot" => "pivot(rowKey:/columnKey:/valueColumn:)",
                                    "keep" => "keep(columns:)",
                                    "drop" => "drop(columns:)",
                                    "sort" => "sort(columns:)",
                                    _ => "column parameter",
                                };
                                refs.columns.push((s, how));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        // Record keys: `{k: ...`, `, k: ...`, `{r with k: ...` inside braces.
        match t.get(i) {
            Some(Tok::Punct(p)) if p == "(" || p == "[" || p == "{" => {
                brackets.push(match p.as_str() {
                    "{" => "{",
                    "[" => "[",
                    _ => "(",
                })
            }
            Some(Tok::Punct(p)) if p == ")" || p == "]" || p == "}" => {
                brackets.pop();
            }
            Some(Tok::Word(k))
                if brackets.last() == Some(&"{")
                    && is_punct(t.get(i + 1), ":")
                    && (is_punct(t.get(i.wrapping_sub(1)), "{")
                        || is_punct(t.get(i.wrapping_sub(1)), ",")
                        || is_word(t.get(i.wrapping_sub(1)), "with")) =>
            {
                refs.defined.insert(k.clone());
            }
            _ => {}
        }
    }
    refs
}

// ---------------------------------------------------------------------------------------------
// Checks.

/// Checks one Flux query; `at` says where it is (dashboard › panel › target).
fn check_query(at: &str, q: &str, schema: &Schema, is_variable: bool, errs: &mut Vec<String>) {
    let refs = flux_refs(q);
    for m in &refs.measurements {
        if !schema.measurements.contains_key(m) {
            errs.push(format!(
                "{at}: unknown measurement `{m}` (the schema has: {})",
                schema
                    .measurements
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let known: Vec<&String> = refs
        .measurements
        .iter()
        .filter(|m| schema.measurements.contains_key(*m))
        .collect();
    if refs.measurements.is_empty() && !is_variable {
        errs.push(format!(
            "{at}: the query names no measurement (r._measurement == \"…\")"
        ));
    }
    for scope in &refs.scopes {
        let ms: Vec<&String> = if scope.measurements.is_empty() {
            known.clone()
        } else {
            scope.measurements.iter().collect()
        };
        for f in &scope.fields {
            let ok = ms.iter().any(|m| {
                schema.measurements.get(*m).is_some_and(|(_, fields)| {
                    if m.as_str() == "telemetry" && !scope.categories.is_empty() && f != "online" {
                        scope
                            .categories
                            .iter()
                            .any(|c| schema.profiles.get(c).is_some_and(|sig| sig.contains(f)))
                    } else {
                        fields.contains(f)
                    }
                })
            });
            if !ok && !ms.is_empty() {
                let ms_names: Vec<&str> = ms.iter().map(|m| m.as_str()).collect();
                let valid: BTreeSet<&String> = ms
                    .iter()
                    .filter_map(|m| schema.measurements.get(*m))
                    .flat_map(|(_, f)| f)
                    .collect();
                let cats = if scope.categories.is_empty() || !ms_names.contains(&"telemetry") {
                    String::new()
                } else {
                    format!(" of category {}", scope.categories.join("/"))
                };
                errs.push(format!(
                    "{at}: unknown field `{f}` of measurement {}{cats} (fields: {})",
                    ms_names.join("/"),
                    valid
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        for c in &scope.categories {
            if !schema.profiles.contains_key(c) {
                errs.push(format!(
                    "{at}: unknown category `{c}` (built-in profiles: {})",
                    schema
                        .profiles
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    // Columns: standard ones, the query's own, and the tags and fields of its measurements
    // (fields become columns after a pivot); a variable without a measurement may use any tag.
    let mut allowed: BTreeSet<String> = STANDARD_COLUMNS.iter().map(|s| (*s).to_owned()).collect();
    allowed.extend(refs.defined.iter().cloned());
    let pool: Vec<&String> = if known.is_empty() {
        schema.measurements.keys().collect()
    } else {
        known.clone()
    };
    for m in &pool {
        if let Some((tags, fields)) = schema.measurements.get(*m) {
            allowed.extend(tags.iter().cloned());
            if !known.is_empty() {
                allowed.extend(fields.iter().cloned());
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (col, how) in &refs.columns {
        if !allowed.contains(col) && seen.insert(col.clone()) {
            let tags: BTreeSet<&String> = pool
                .iter()
                .filter_map(|m| schema.measurements.get(*m))
                .flat_map(|(t, _)| t)
                .collect();
            errs.push(format!(
                "{at}: unknown tag or column `{col}` in {how} (tags of {}: {})",
                pool.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("/"),
                tags.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if !q.contains("from(bucket: \"${bucket}\")")
        && !q.contains("bucket: v.bucket")
        && !q.contains("tagValues(bucket: \"${bucket}\"")
    {
        errs.push(format!(
            "{at}: the query does not read the `bucket` variable (from(bucket: \"${{bucket}}\"))"
        ));
    }
    if !is_variable && !q.contains("r.site == \"${site}\"") {
        errs.push(format!(
            "{at}: the query does not filter on the `site` variable (r.site == \"${{site}}\")"
        ));
    }
}

fn datasource_uid(v: &Value) -> Option<&str> {
    v.get("datasource")?.get("uid")?.as_str()
}

fn has_cjk(s: &str) -> bool {
    s.chars()
        .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c) || ('\u{3400}'..='\u{4dbf}').contains(&c))
}

/// Every panel, rows' nested panels included, with whether it sits at the top level.
fn all_panels(panels: &[Value]) -> Vec<(&Value, bool)> {
    let mut out = Vec::new();
    for p in panels {
        out.push((p, true));
        if let Some(nested) = p.get("panels").and_then(Value::as_array) {
            out.extend(nested.iter().map(|n| (n, false)));
        }
    }
    out
}

/// Checks one dashboard's JSON text; returns its uid (if any) and every problem found.
fn check_dashboard(file: &str, text: &str, schema: &Schema) -> (Option<String>, Vec<String>) {
    let mut errs = Vec::new();
    let d: Value = match serde_json::from_str(text) {
        Ok(d) => d,
        Err(e) => return (None, vec![format!("{file}: not valid JSON: {e}")]),
    };
    let uid = d.get("uid").and_then(Value::as_str).map(str::to_owned);
    if uid.as_deref().is_none_or(str::is_empty) {
        errs.push(format!("{file}: no `uid`"));
    }
    if d.get("title")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        errs.push(format!("{file}: no `title`"));
    }
    match d.get("schemaVersion").and_then(Value::as_u64) {
        Some(v) if (30..=41).contains(&v) => {}
        other => errs.push(format!(
            "{file}: schemaVersion {other:?}; expected about 39 (Grafana 10–11)"
        )),
    }
    if d.get("id").is_some_and(|id| !id.is_null()) {
        errs.push(format!(
            "{file}: `id` must be null in a provisioned dashboard"
        ));
    }

    // Template variables.
    let vars = d
        .pointer("/templating/list")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v.get("name").and_then(Value::as_str) == Some(name))
    };
    match var("bucket") {
        None => errs.push(format!("{file}: no `bucket` template variable")),
        Some(b) => {
            let default = b.pointer("/current/value").and_then(Value::as_str);
            if default != Some("estate") {
                errs.push(format!(
                    "{file}: the `bucket` variable's default is {default:?}, not \"estate\""
                ));
            }
        }
    }
    match var("site") {
        None => errs.push(format!("{file}: no `site` template variable")),
        Some(s) => {
            let q = s.get("query").and_then(Value::as_str).unwrap_or("");
            if !q.contains("schema.tagValues") || !q.contains("tag: \"site\"") {
                errs.push(format!(
                    "{file}: the `site` variable is not schema.tagValues(…, tag: \"site\")"
                ));
            }
        }
    }
    for v in &vars {
        let name = v.get("name").and_then(Value::as_str).unwrap_or("?");
        if v.get("type").and_then(Value::as_str) == Some("query") {
            let at = format!("{file} › variable `{name}`");
            if datasource_uid(v) != Some(DATASOURCE_UID) {
                errs.push(format!(
                    "{at}: datasource uid is {:?}, not {DATASOURCE_UID:?}",
                    datasource_uid(v)
                ));
            }
            match v.get("query").and_then(Value::as_str) {
                Some(q) => check_query(&at, q, schema, true, &mut errs),
                None => errs.push(format!("{at}: no query")),
            }
        }
    }

    // Panels.
    let panels = d
        .get("panels")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if panels.is_empty() {
        errs.push(format!("{file}: no panels"));
    }
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, [u64; 4])> = Vec::new();
    for (p, top) in all_panels(&panels) {
        let title = p.get("title").and_then(Value::as_str).unwrap_or("");
        let at = format!("{file} › panel \"{title}\"");
        let ty = p.get("type").and_then(Value::as_str).unwrap_or("");
        if title.is_empty() {
            errs.push(format!("{at}: no title"));
        } else if !has_cjk(title) {
            errs.push(format!("{at}: the title is not Chinese"));
        }
        if !PANEL_TYPES.contains(&ty) {
            errs.push(format!(
                "{at}: type {ty:?} is not one of {}",
                PANEL_TYPES.join(", ")
            ));
        }
        match p.get("id").and_then(Value::as_u64) {
            Some(id) if !ids.insert(id) => errs.push(format!("{at}: id {id} is used twice")),
            None => errs.push(format!("{at}: no numeric id")),
            _ => {}
        }
        let g = |k: &str| p.pointer(&format!("/gridPos/{k}")).and_then(Value::as_u64);
        match (g("x"), g("y"), g("w"), g("h")) {
            (Some(x), Some(y), Some(w), Some(h)) if w > 0 && h > 0 && x + w <= 24 => {
                if top {
                    for (other, [ox, oy, ow, oh]) in &boxes {
                        if x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h {
                            errs.push(format!("{at}: gridPos overlaps panel \"{other}\""));
                        }
                    }
                    boxes.push((title.to_owned(), [x, y, w, h]));
                }
            }
            _ => errs.push(format!(
                "{at}: gridPos needs x, y, w > 0, h > 0 with x + w ≤ 24"
            )),
        }
        if ty == "row" {
            continue;
        }
        let english = p
            .get("description")
            .and_then(Value::as_str)
            .is_some_and(|s| s.chars().filter(char::is_ascii_alphabetic).count() >= 10);
        if !english {
            errs.push(format!("{at}: no English description"));
        }
        if datasource_uid(p) != Some(DATASOURCE_UID)
            || p.pointer("/datasource/type").and_then(Value::as_str) != Some("influxdb")
        {
            errs.push(format!(
                "{at}: datasource is {}, not {{\"type\": \"influxdb\", \"uid\": \"{DATASOURCE_UID}\"}}",
                p.get("datasource").map_or("missing".into(), Value::to_string)
            ));
        }
        let targets = p
            .get("targets")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if targets.is_empty() {
            errs.push(format!("{at}: no targets"));
        }
        for t in &targets {
            let ref_id = t.get("refId").and_then(Value::as_str).unwrap_or("?");
            let at = format!("{at} › target {ref_id}");
            if t.get("datasource").is_some() && datasource_uid(t) != Some(DATASOURCE_UID) {
                errs.push(format!(
                    "{at}: datasource uid is {:?}, not {DATASOURCE_UID:?}",
                    datasource_uid(t)
                ));
            }
            match t.get("query").and_then(Value::as_str) {
                Some(q) => check_query(&at, q, schema, false, &mut errs),
                None => errs.push(format!("{at}: no Flux query")),
            }
        }
    }
    (uid, errs)
}

fn dashboard_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dashboards_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_dashboard_query_matches_the_store_schema() {
    let schema = schema();
    let files = dashboard_files();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "assessment.json",
        "control-room.json",
        "heating-season.json",
    ] {
        assert!(
            names.contains(&expected),
            "dashboards/{expected} is missing"
        );
    }
    let mut errs = Vec::new();
    let mut uids: BTreeMap<String, String> = BTreeMap::new();
    for (file, text) in &files {
        let (uid, e) = check_dashboard(file, text, &schema);
        errs.extend(e);
        if let Some(uid) = uid {
            if let Some(other) = uids.insert(uid.clone(), file.clone()) {
                errs.push(format!("{file}: uid `{uid}` is also the uid of {other}"));
            }
        }
    }
    assert!(
        errs.is_empty(),
        "{} problem(s) in dashboards/ (see `estate-gateway schema`):\n  {}",
        errs.len(),
        errs.join("\n  ")
    );
}

#[test]
fn the_dashboards_use_the_measurements_they_are_for() {
    let files: BTreeMap<String, String> = dashboard_files().into_iter().collect();
    let used = |file: &str| -> BTreeSet<String> {
        let d: Value = serde_json::from_str(&files[file]).unwrap();
        let mut out = BTreeSet::new();
        for (p, _) in all_panels(d["panels"].as_array().unwrap()) {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.extend(flux_refs(t["query"].as_str().unwrap()).measurements);
            }
        }
        out
    };
    let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
    assert_eq!(
        used("control-room.json"),
        set(&["alarm", "device_state", "intactness", "response"])
    );
    assert_eq!(used("heating-season.json"), set(&["heating", "telemetry"]));
    assert_eq!(used("assessment.json"), set(&["assessment"]));
}

/// `response` points come one per step (response, arrival, repair; DESIGN §4): every query on
/// them selects its steps in the filter that names the measurement (`r.step == "…"` or
/// `contains(value: r.step, set: [...])`), so no panel mixes acknowledgment, arrival and
/// repair figures; and the control room shows all three steps.
#[test]
fn response_queries_select_their_step() {
    let steps = ["response", "arrival", "repair"];
    let mut shown = BTreeSet::new();
    let mut errs = Vec::new();
    for (file, text) in dashboard_files() {
        let d: Value = serde_json::from_str(&text).unwrap();
        for (p, _) in all_panels(d["panels"].as_array().unwrap()) {
            for t in p["targets"].as_array().into_iter().flatten() {
                let q = t["query"].as_str().unwrap_or_default();
                let toks = tokenize(q);
                let mut i = 0;
                while i < toks.len() {
                    if is_word(toks.get(i), "filter") && is_punct(toks.get(i + 1), "(") {
                        let end = closing(&toks, i + 1).min(toks.len() - 1);
                        let span = &toks[i + 1..=end];
                        if literals_of(span, "_measurement")
                            .iter()
                            .any(|m| m == "response")
                        {
                            let named = literals_of(span, "step");
                            let at = format!(
                                "{file} › panel {} › target {}",
                                p["title"],
                                t["refId"].as_str().unwrap_or("?")
                            );
                            if named.is_empty() {
                                errs.push(format!("{at}: a response query without a step filter"));
                            }
                            for s in named {
                                if steps.contains(&s.as_str()) {
                                    shown.insert(s);
                                } else {
                                    errs.push(format!("{at}: unknown step `{s}`"));
                                }
                            }
                        }
                        i = end;
                    }
                    i += 1;
                }
            }
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
    assert_eq!(
        shown,
        steps
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<_>>()
    );
}

/// A typo in a measurement, a field or a tag is reported naming the dashboard, the panel and
/// the name — the failure a schema change would cause.
#[test]
fn a_schema_mismatch_names_dashboard_panel_and_name() {
    let schema = schema();
    let text = std::fs::read_to_string(dashboards_dir().join("heating-season.json")).unwrap();
    let cases = [
        (
            "r._field == \\\"indoor_temp_c\\\"",
            "r._field == \\\"indoor_temp\\\"",
            "heating-season.json › panel \"室内温度（按楼栋：最低/平均/最高）\" › target A: unknown field `indoor_temp` of measurement telemetry of category indoor_sensor",
        ),
        (
            "r._field == \\\"return_temp_c\\\"",
            "r._field == \\\"humidity_pct\\\"",
            "unknown field `humidity_pct` of measurement telemetry of category heating_loop",
        ),
        (
            "r._measurement == \\\"heating\\\"",
            "r._measurement == \\\"heatng\\\"",
            "heating-season.json › panel \"供暖达标率（本月，按楼栋）\" › target A: unknown measurement `heatng`",
        ),
        (
            "r._field == \\\"coverage\\\"",
            "r._field == \\\"coverage_pct\\\"",
            "panel \"测温覆盖率（本月，按楼栋）\" › target A: unknown field `coverage_pct` of measurement heating",
        ),
        (
            "keep(columns: [\\\"_time\\\", \\\"_value\\\", \\\"building\\\"])",
            "keep(columns: [\\\"_time\\\", \\\"_value\\\", \\\"bldg\\\"])",
            "unknown tag or column `bldg` in keep(columns:)",
        ),
        (
            "group(columns: [\\\"building\\\"])",
            "group(columns: [\\\"buildings\\\"])",
            "unknown tag or column `buildings` in group(columns:)",
        ),
        (
            "r.category == \\\"indoor_sensor\\\"",
            "r[\\\"categry\\\"] == \\\"indoor_sensor\\\"",
            "unknown tag or column `categry` in r.<column>",
        ),
        (
            "\"uid\": \"estate-influxdb\"",
            "\"uid\": \"influx\"",
            "panel \"供暖达标率（本月，按楼栋）\" › target A: datasource uid is Some(\"influx\"), not \"estate-influxdb\"",
        ),
        (
            "\"name\": \"bucket\"",
            "\"name\": \"bukket\"",
            "heating-season.json: no `bucket` template variable",
        ),
    ];
    let (_, clean) = check_dashboard("heating-season.json", &text, &schema);
    assert!(clean.is_empty(), "{clean:?}");
    for (from, to, expected) in cases {
        assert!(text.contains(from), "the dashboard no longer has {from}");
        let broken = text.replacen(from, to, 1);
        let (_, errs) = check_dashboard("heating-season.json", &broken, &schema);
        assert!(
            errs.iter().any(|e| e.contains(expected)),
            "replacing {from} by {to}: expected an error containing\n  {expected}\ngot\n  {}",
            errs.join("\n  ")
        );
    }
}

#[test]
fn flux_references_are_read() {
    let q = r#"from(bucket: "${bucket}")
  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
  |> filter(fn: (r) => r._measurement == "alarm" and r["site"] == "${site}" and contains(value: r._field, set: ["id", "message"]) and r.rule =~ /^a{2}$/ and contains(value: r.category, set: ${category:json}))
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> map(fn: (r) => ({r with age_s: 1.0, text: r.message}))
  |> group(columns: ["device", "age_s"])"#;
    let refs = flux_refs(q);
    assert_eq!(refs.scopes.len(), 1);
    assert_eq!(refs.scopes[0].measurements, ["alarm"]);
    assert_eq!(refs.scopes[0].fields, ["id", "message"]);
    let cols: BTreeSet<&str> = refs.columns.iter().map(|(c, _)| c.as_str()).collect();
    for c in [
        "site", "rule", "category", "message", "device", "age_s", "_time",
    ] {
        assert!(cols.contains(c), "{c} in {cols:?}");
    }
    assert_eq!(
        refs.defined,
        ["age_s", "text"].iter().map(|s| (*s).to_owned()).collect()
    );
}
