//! `lanes.toml` text -> [`Catalog`], or every diagnostic at once.
//!
//! The file is read into toml's spanned document tree and walked by hand rather than through
//! `serde` derive: derive stops at the first unknown key, and users deserve every error of a
//! broken catalog in one pass, each pointing at the exact text that is wrong.

use crate::catalog::{
    Catalog, Group, Lane, LaneClass, Limits, Pin, SUPPORTED_VERSIONS, Step, parse_size,
};
use crate::diagnostic::{Diagnostic, Sink, Source, did_you_mean};
use crate::glob::Glob;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A catalog that did not validate: every diagnostic, and the sources they point into.
#[derive(Clone, Debug)]
pub struct CatalogError {
    /// The catalog and, when one was read, its pins file.
    pub sources: Vec<Source>,
    /// Every problem found, in source order per file.
    pub diagnostics: Vec<Diagnostic>,
}

impl std::fmt::Display for CatalogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.diagnostics.len();
        write!(
            f,
            "the catalog has {n} error{}",
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for CatalogError {}

impl CatalogError {
    /// Always the user's input: the catalog is theirs to fix.
    pub fn class(&self) -> crate::ErrorClass {
        crate::ErrorClass::Input
    }
}

/// Reads a file the catalog refers to (the pins file), by repository-relative path.
pub type LoadFile<'a> = dyn FnMut(&str) -> Result<String, String> + 'a;

/// Parse and validate a catalog. `load` reads the pins file when the catalog names one; it is the
/// only I/O, and the caller decides where it reads from (a commit or the working tree).
pub fn parse(source: &Source, load: &mut LoadFile<'_>) -> Result<Catalog, CatalogError> {
    let mut sources = vec![source.clone()];
    let (doc, syntax) = DeTable::parse_recoverable(&source.text);
    let mut main = Sink::new(source);
    if !syntax.is_empty() {
        for err in syntax {
            let span = err.span().unwrap_or(0..0);
            main.push(
                "catalog::syntax",
                span,
                format!("invalid TOML: {}", err.message().trim_end()),
                "here",
                Some("see docs/manifest.md for the catalog format".into()),
            );
        }
        return Err(CatalogError {
            sources,
            diagnostics: main.diagnostics,
        });
    }
    let doc = doc.into_inner();
    let mut p = Parser {
        sink: main,
        lane_names: BTreeSet::new(),
    };

    let version = p.version(&doc);
    let sets = doc.get("paths").map(|v| p.sets(v)).unwrap_or_default();

    let mut pins_file = None;
    let mut pins = BTreeMap::new();
    let mut pins_diagnostics = Vec::new();
    if let Some(value) = doc.get("pins") {
        match value.get_ref() {
            DeValue::String(path) => {
                let path = path.trim_start_matches("./").to_owned();
                let outside = path.starts_with('/') || path.split('/').any(|c| c == "..");
                if outside {
                    p.sink.push(
                        "catalog::pins-file",
                        value.span(),
                        format!("pins file `{path}` is outside the repository"),
                        "pins file named here",
                        Some("name a file inside the repository, relative to its root".into()),
                    );
                }
                match (!outside).then(|| load(&path)) {
                    None => {}
                    Some(Ok(text)) => {
                        let pins_source = Source::new(path.clone(), text);
                        let (pins_doc, syntax) = DeTable::parse_recoverable(&pins_source.text);
                        let mut sink = Sink::new(&pins_source);
                        for err in &syntax {
                            sink.push(
                                "catalog::syntax",
                                err.span().unwrap_or(0..0),
                                format!("invalid TOML: {}", err.message().trim_end()),
                                "here",
                                None,
                            );
                        }
                        if syntax.is_empty() {
                            pins = pins_table(&mut sink, pins_doc.get_ref());
                        }
                        pins_diagnostics = sink.diagnostics;
                        sources.push(pins_source);
                    }
                    Some(Err(why)) => p.sink.push(
                        "catalog::pins-file",
                        value.span(),
                        format!("cannot read pins file `{path}`: {why}"),
                        "pins file named here",
                        Some("the path is relative to the repository root".into()),
                    ),
                }
                pins_file = Some(path);
            }
            DeValue::Table(table) => pins = pins_table(&mut p.sink, table),
            _ => p.type_error("pins", value, "a table of pins or the path of a pins file"),
        }
    }

    let groups = doc.get("group").map(|v| p.groups(v)).unwrap_or_default();

    let mut lanes = Vec::new();
    let mut refs = Vec::new();
    if let Some(value) = doc.get("lane")
        && let Some(table) = p.table("lane", value)
    {
        // Names first, so `needs` can be checked against lanes defined later in the file.
        for (name, _) in table.iter() {
            p.lane_names.insert(name.get_ref().to_string());
        }
        for (name, value) in table.iter() {
            if let Some((lane, r)) = p.lane(name, value, &sets) {
                lanes.push(lane);
                refs.push(r);
            }
        }
    }

    p.check_refs(&lanes, &refs, &groups, &pins);
    p.check_cycles(&lanes, &refs);

    const TOP_KEYS: &[&str] = &["version", "paths", "pins", "group", "lane"];
    for (key, _) in doc.iter() {
        if !TOP_KEYS.contains(&key.get_ref().as_ref()) {
            p.unknown_key(key, TOP_KEYS, "the catalog");
        }
    }

    let mut diagnostics = p.sink.diagnostics;
    diagnostics.sort_by_key(|d| d.span.start);
    diagnostics.extend(pins_diagnostics);
    match version {
        Some(version) if diagnostics.is_empty() => Ok(Catalog {
            version,
            sets,
            pins_file,
            pins,
            groups,
            lanes,
        }),
        _ => Err(CatalogError {
            sources,
            diagnostics,
        }),
    }
}

/// Spans kept while parsing a lane, for cross-reference errors found after all lanes are read.
#[derive(Debug, Default)]
struct LaneRefs {
    name: Range<usize>,
    needs: Vec<Range<usize>>,
    concurrency: Option<Range<usize>>,
    pins: Vec<Range<usize>>,
}

const LANE_KEYS: &[&str] = &[
    "title",
    "class",
    "paths",
    "inputs",
    "needs",
    "concurrency",
    "scope",
    "labels",
    "timeout",
    "schedule",
    "cancel-superseded",
    "pins",
    "cache-mounts",
    "limits",
    "secrets",
    "step",
];

const STEP_KEYS: &[&str] = &[
    "name", "run", "shell", "env", "pass-env", "timeout", "cache", "network", "outputs", "limits",
];

struct Parser<'s> {
    sink: Sink<'s>,
    lane_names: BTreeSet<String>,
}

type Value<'i> = Spanned<DeValue<'i>>;
type Key<'i> = Spanned<std::borrow::Cow<'i, str>>;

fn kind(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

impl Parser<'_> {
    fn type_error(&mut self, key: &str, value: &Value<'_>, expected: &str) {
        self.sink.push(
            "catalog::type",
            value.span(),
            format!("`{key}` must be {expected}, not {}", kind(value.get_ref())),
            format!("expected {expected}"),
            None,
        );
    }

    fn unknown_key(&mut self, key: &Key<'_>, known: &[&str], within: &str) {
        let word = key.get_ref().as_ref();
        let help = did_you_mean(word, known.iter().copied(), || {
            format!("known keys: {}", known.join(", "))
        });
        self.sink.push(
            "catalog::unknown-key",
            key.span(),
            format!("unknown key `{word}` in {within}"),
            "unknown key",
            Some(help),
        );
    }

    fn table<'a, 'i>(&mut self, key: &str, value: &'a Value<'i>) -> Option<&'a DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.type_error(key, value, "a table");
                None
            }
        }
    }

    fn string(&mut self, key: &str, value: &Value<'_>) -> Option<String> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.type_error(key, value, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, key: &str, value: &Value<'_>) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                // The last component of the dotted path is the key as the user wrote it.
                let name = key.rsplit('.').next().unwrap_or(key);
                self.sink.push(
                    "catalog::type",
                    value.span(),
                    format!("`{key}` must be true or false, not {}", kind(other)),
                    "expected true or false",
                    Some(format!(
                        "write `{name} = true` or `{name} = false`, without quotes"
                    )),
                );
                None
            }
        }
    }

    /// An array of strings, each with its span.
    fn strings(&mut self, key: &str, value: &Value<'_>) -> Vec<(String, Range<usize>)> {
        let DeValue::Array(items) = value.get_ref() else {
            self.type_error(key, value, "an array of strings");
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| match item.get_ref() {
                DeValue::String(s) => Some((s.to_string(), item.span())),
                _ => {
                    self.type_error(key, item, "an array of strings");
                    None
                }
            })
            .collect()
    }

    /// A name that will appear in URLs, file names and environment variables.
    fn name(&mut self, what: &str, name: &str, span: Range<usize>) {
        let ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            self.sink.push(
                "catalog::name",
                span,
                format!("invalid {what} name `{name}`"),
                "invalid name",
                Some(
                    "use letters, digits, `-`, `_` and `.`, starting with a letter or digit".into(),
                ),
            );
        }
    }

    /// `limits = { memory = "4G", pids = 4096, cpus = 2 }`.
    fn limits(&mut self, key: &str, value: &Value<'_>) -> Limits {
        let mut limits = Limits::default();
        let Some(table) = self.table(key, value) else {
            return limits;
        };
        for (name, item) in table.iter() {
            let k = name.get_ref().as_ref();
            let path = format!("{key}.{k}");
            let bad =
                |what: &str, help: &str| (format!("`{path}` must be {what}"), help.to_owned());
            let problem = match (k, item.get_ref()) {
                ("memory", DeValue::String(s)) => match parse_size(s) {
                    Some(bytes) if bytes >= 1 << 20 => {
                        limits.memory = Some(bytes);
                        None
                    }
                    _ => Some(bad(
                        "a size of at least 1M",
                        "write a size such as \"512M\" or \"4G\" (powers of 1024)",
                    )),
                },
                ("memory", _) => Some(bad("a string", "write a size such as \"4G\", in quotes")),
                ("pids", DeValue::Integer(i)) => match i.as_str().parse::<u64>() {
                    Ok(n) if n >= 1 => {
                        limits.pids = Some(n);
                        None
                    }
                    _ => Some(bad("a whole number of at least 1", "e.g. `pids = 4096`")),
                },
                ("pids", _) => Some(bad("a whole number", "e.g. `pids = 4096`, without quotes")),
                ("cpus", DeValue::Integer(i)) => match i.as_str().parse::<u32>() {
                    Ok(n) if n >= 1 => {
                        limits.cpus = Some(f64::from(n));
                        None
                    }
                    _ => Some(bad("at least 0.01", "e.g. `cpus = 2` or `cpus = 1.5`")),
                },
                ("cpus", DeValue::Float(f)) => match f.as_str().parse::<f64>() {
                    Ok(n) if n >= 0.01 && n.is_finite() => {
                        limits.cpus = Some(n);
                        None
                    }
                    _ => Some(bad("at least 0.01", "e.g. `cpus = 2` or `cpus = 1.5`")),
                },
                ("cpus", _) => Some(bad(
                    "a number",
                    "e.g. `cpus = 2` or `cpus = 1.5`, without quotes",
                )),
                _ => {
                    self.unknown_key(name, &["memory", "pids", "cpus"], &format!("`{key}`"));
                    None
                }
            };
            if let Some((message, help)) = problem {
                self.sink.push(
                    "catalog::limits",
                    item.span(),
                    message,
                    "invalid limit",
                    Some(help),
                );
            }
        }
        limits
    }

    fn duration(&mut self, key: &str, value: &Value<'_>) -> Option<Duration> {
        let text = self.string(key, value)?;
        match parse_duration(&text) {
            Some(d) => Some(d),
            None => {
                self.sink.push(
                    "catalog::duration",
                    value.span(),
                    format!("invalid duration `{text}` for `{key}`"),
                    "not a duration",
                    Some("write a positive duration such as \"90s\", \"30m\" or \"1h30m\"".into()),
                );
                None
            }
        }
    }

    fn version(&mut self, doc: &DeTable<'_>) -> Option<u32> {
        let Some(value) = doc.get("version") else {
            self.sink.push(
                "catalog::version",
                0..0,
                "the catalog has no `version`",
                "expected `version = 1` at the top",
                Some("add `version = 1` as the first line".into()),
            );
            return None;
        };
        let supported = match value.get_ref() {
            DeValue::Integer(i) => i
                .as_str()
                .parse::<u32>()
                .ok()
                .filter(|v| SUPPORTED_VERSIONS.contains(v)),
            _ => None,
        };
        if supported.is_none() {
            let list: Vec<String> = SUPPORTED_VERSIONS.iter().map(u32::to_string).collect();
            self.sink.push(
                "catalog::version",
                value.span(),
                format!("unsupported catalog version {}", text_of(value.get_ref())),
                "unsupported version",
                Some(format!(
                    "this lanes understands version {}; upgrade lanes or write `version = 1`",
                    list.join(", ")
                )),
            );
        }
        supported
    }

    fn sets(&mut self, value: &Value<'_>) -> BTreeMap<String, Vec<Glob>> {
        let mut sets = BTreeMap::new();
        let Some(table) = self.table("paths", value) else {
            return sets;
        };
        for (name, value) in table.iter() {
            let name_str = name.get_ref().to_string();
            self.name("path set", &name_str, name.span());
            let key = format!("paths.{name_str}");
            let mut globs = Vec::new();
            for (pattern, span) in self.strings(&key, value) {
                if pattern.trim_start_matches('!').starts_with('@') {
                    self.sink.push(
                        "catalog::nested-set",
                        span,
                        format!("path set `{name_str}` refers to another set: `{pattern}`"),
                        "sets cannot refer to sets",
                        Some("list the patterns here, or reference both sets from the lane".into()),
                    );
                    continue;
                }
                if let Some(glob) = self.glob(&pattern, span) {
                    globs.push(glob);
                }
            }
            sets.insert(name_str, globs);
        }
        sets
    }

    fn glob(&mut self, pattern: &str, span: Range<usize>) -> Option<Glob> {
        match Glob::parse(pattern) {
            Ok(glob) => Some(glob),
            Err(e) => {
                self.sink
                    .push("catalog::glob", span, e.message, "invalid pattern", e.help);
                None
            }
        }
    }

    /// A pattern list: globs and `@set` / `!@set` references, expanded in place.
    fn patterns(
        &mut self,
        key: &str,
        value: &Value<'_>,
        sets: &BTreeMap<String, Vec<Glob>>,
    ) -> Vec<Glob> {
        let mut out = Vec::new();
        for (pattern, span) in self.strings(key, value) {
            let (negate, rest) = match pattern.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, pattern.as_str()),
            };
            if let Some(set) = rest.strip_prefix('@') {
                match sets.get(set) {
                    Some(globs) if negate => out.extend(globs.iter().map(Glob::flipped)),
                    Some(globs) => out.extend(globs.iter().cloned()),
                    None => {
                        let help = if sets.is_empty() {
                            "define it under [paths], e.g. `name = [\"src/**\"]`".into()
                        } else {
                            let names: Vec<String> = sets.keys().map(|k| format!("@{k}")).collect();
                            did_you_mean(
                                &format!("@{set}"),
                                names.iter().map(String::as_str),
                                || format!("defined sets: {}", names.join(", ")),
                            )
                        };
                        self.sink.push(
                            "catalog::undefined-set",
                            span,
                            format!("undefined path set `@{set}`"),
                            "not defined under [paths]",
                            Some(help),
                        );
                    }
                }
            } else if let Some(glob) = self.glob(&pattern, span) {
                out.push(glob);
            }
        }
        out
    }

    fn groups(&mut self, value: &Value<'_>) -> BTreeMap<String, Group> {
        let mut groups = BTreeMap::new();
        let Some(table) = self.table("group", value) else {
            return groups;
        };
        for (name, value) in table.iter() {
            let name_str = name.get_ref().to_string();
            self.name("group", &name_str, name.span());
            let Some(group) = self.table(&format!("group.{name_str}"), value) else {
                continue;
            };
            let mut limit = None;
            for (key, value) in group.iter() {
                match key.get_ref().as_ref() {
                    "limit" => {
                        limit = match value.get_ref() {
                            DeValue::Integer(i) => {
                                i.as_str().parse::<u32>().ok().filter(|l| *l >= 1)
                            }
                            _ => None,
                        };
                        if limit.is_none() {
                            self.sink.push(
                                "catalog::group-limit",
                                value.span(),
                                format!("group `{name_str}` needs a `limit` of at least 1"),
                                "expected a positive integer",
                                None,
                            );
                        }
                    }
                    _ => self.unknown_key(key, &["limit"], &format!("group `{name_str}`")),
                }
            }
            if group.get("limit").is_none() {
                self.sink.push(
                    "catalog::group-limit",
                    name.span(),
                    format!("group `{name_str}` has no `limit`"),
                    "group defined here",
                    Some("add `limit = 1` (how many jobs may hold it at once)".into()),
                );
            }
            if let Some(limit) = limit {
                groups.insert(name_str, Group { limit });
            }
        }
        groups
    }

    fn lane(
        &mut self,
        name: &Key<'_>,
        value: &Value<'_>,
        sets: &BTreeMap<String, Vec<Glob>>,
    ) -> Option<(Lane, LaneRefs)> {
        let lane_name = name.get_ref().to_string();
        self.name("lane", &lane_name, name.span());
        let table = self.table(&format!("lane.{lane_name}"), value)?;
        let mut lane = Lane {
            name: lane_name.clone(),
            title: None,
            class: LaneClass::Required,
            paths: None,
            inputs: None,
            needs: Vec::new(),
            concurrency: None,
            scope: None,
            labels: Vec::new(),
            timeout: None,
            schedule: None,
            cancel_superseded: true,
            pins: Vec::new(),
            cache_mounts: Vec::new(),
            limits: Limits::default(),
            secrets: Vec::new(),
            steps: Vec::new(),
        };
        let mut refs = LaneRefs {
            name: name.span(),
            ..LaneRefs::default()
        };
        let mut schedule_span = None;
        let within = format!("lane `{lane_name}`");
        for (key, value) in table.iter() {
            let k = key.get_ref().as_ref();
            let path = format!("lane.{lane_name}.{k}");
            match k {
                "title" => lane.title = self.string(&path, value),
                "class" => {
                    if let Some(text) = self.string(&path, value) {
                        match LaneClass::ALL.iter().find(|c| c.as_str() == text) {
                            Some(class) => lane.class = *class,
                            None => {
                                let names = LaneClass::ALL.map(LaneClass::as_str);
                                let help = did_you_mean(&text, names, || {
                                    format!("one of: {}", names.join(", "))
                                });
                                self.sink.push(
                                    "catalog::class",
                                    value.span(),
                                    format!("unknown lane class `{text}`"),
                                    "unknown class",
                                    Some(help),
                                );
                            }
                        }
                    }
                }
                "paths" => lane.paths = Some(self.patterns(&path, value, sets)),
                "inputs" => lane.inputs = Some(self.patterns(&path, value, sets)),
                "needs" => {
                    for (need, span) in self.strings(&path, value) {
                        lane.needs.push(need);
                        refs.needs.push(span);
                    }
                }
                "concurrency" => {
                    lane.concurrency = self.string(&path, value);
                    refs.concurrency = Some(value.span());
                }
                "scope" => {
                    lane.scope = self.string(&path, value);
                    if let Some(scope) = &lane.scope {
                        self.name("scope", scope, value.span());
                    }
                }
                "labels" => {
                    lane.labels = self
                        .strings(&path, value)
                        .into_iter()
                        .map(|(s, _)| s)
                        .collect()
                }
                "timeout" => lane.timeout = self.duration(&path, value),
                "schedule" => {
                    schedule_span = Some(value.span());
                    if let Some(text) = self.string(&path, value) {
                        if let Err(why) = text.parse::<croner::Cron>() {
                            self.sink.push(
                                "catalog::cron",
                                value.span(),
                                format!("invalid cron schedule `{text}`: {why}"),
                                "not a cron expression",
                                Some(
                                    "five fields: minute hour day-of-month month day-of-week, \
                                     e.g. \"0 3 * * *\" for 03:00 every day"
                                        .into(),
                                ),
                            );
                        }
                        lane.schedule = Some(text);
                    }
                }
                "cancel-superseded" => {
                    lane.cancel_superseded = self.boolean(&path, value).unwrap_or(true)
                }
                "pins" => {
                    for (pin, span) in self.strings(&path, value) {
                        lane.pins.push(pin);
                        refs.pins.push(span);
                    }
                }
                "cache-mounts" => {
                    for (mount, span) in self.strings(&path, value) {
                        self.name("cache mount", &mount, span);
                        lane.cache_mounts.push(mount);
                    }
                }
                "limits" => lane.limits = self.limits(&path, value),
                "secrets" => {
                    for (name, span) in self.strings(&path, value) {
                        self.env_name(&name, span);
                        lane.secrets.push(name);
                    }
                }
                "step" => lane.steps = self.steps(&lane_name, value, sets),
                _ => self.unknown_key(key, LANE_KEYS, &within),
            }
        }
        match (lane.class, schedule_span) {
            (LaneClass::Nightly, None) => self.sink.push(
                "catalog::schedule",
                name.span(),
                format!("nightly lane `{lane_name}` has no `schedule`"),
                "nightly lane",
                Some("add a cron schedule, e.g. `schedule = \"0 3 * * *\"`".into()),
            ),
            (class, Some(span)) if class != LaneClass::Nightly => self.sink.push(
                "catalog::schedule",
                span,
                format!("`schedule` on {class} lane `{lane_name}`"),
                "only nightly lanes have a schedule",
                Some("set `class = \"nightly\"` or remove `schedule`".into()),
            ),
            _ => {}
        }
        if lane.steps.is_empty() {
            self.sink.push(
                "catalog::no-steps",
                name.span(),
                format!("lane `{lane_name}` has no steps"),
                "lane defined here",
                Some(format!(
                    "add one: `[[lane.{lane_name}.step]]` with `name = \"...\"` and `run = \"...\"`"
                )),
            );
        }
        Some((lane, refs))
    }

    fn steps(
        &mut self,
        lane: &str,
        value: &Value<'_>,
        sets: &BTreeMap<String, Vec<Glob>>,
    ) -> Vec<Step> {
        let DeValue::Array(items) = value.get_ref() else {
            self.type_error(
                &format!("lane.{lane}.step"),
                value,
                "an array of tables ([[...]])",
            );
            return Vec::new();
        };
        let mut steps = Vec::new();
        let mut seen: HashMap<String, Range<usize>> = HashMap::new();
        for item in items.iter() {
            let Some(table) = self.table(&format!("lane.{lane}.step"), item) else {
                continue;
            };
            let mut step = Step {
                name: String::new(),
                run: String::new(),
                shell: None,
                env: BTreeMap::new(),
                pass_env: Vec::new(),
                timeout: None,
                cache: true,
                network: false,
                outputs: None,
                limits: Limits::default(),
            };
            let mut name_span = None;
            let mut has_run = false;
            for (key, value) in table.iter() {
                let k = key.get_ref().as_ref();
                let path = format!("lane.{lane}.step.{k}");
                match k {
                    "name" => {
                        if let Some(name) = self.string(&path, value) {
                            self.name("step", &name, value.span());
                            step.name = name;
                            name_span = Some(value.span());
                        }
                    }
                    "run" => {
                        has_run = true;
                        step.run = self.string(&path, value).unwrap_or_default();
                    }
                    "shell" => {
                        step.shell = self.string(&path, value);
                        if step.shell.as_deref().is_some_and(|s| s.trim().is_empty()) {
                            self.sink.push(
                                "catalog::shell",
                                value.span(),
                                "empty `shell`",
                                "empty",
                                Some("name an interpreter, e.g. \"sh -c\"".into()),
                            );
                        }
                    }
                    "env" => {
                        if let Some(env) = self.table(&path, value) {
                            for (var, val) in env.iter() {
                                self.env_name(var.get_ref(), var.span());
                                if let Some(v) =
                                    self.string(&format!("{path}.{}", var.get_ref()), val)
                                {
                                    step.env.insert(var.get_ref().to_string(), v);
                                }
                            }
                        }
                    }
                    "pass-env" => {
                        for (var, span) in self.strings(&path, value) {
                            self.env_name(&var, span);
                            step.pass_env.push(var);
                        }
                    }
                    "timeout" => step.timeout = self.duration(&path, value),
                    "cache" => step.cache = self.boolean(&path, value).unwrap_or(true),
                    "network" => step.network = self.boolean(&path, value).unwrap_or(false),
                    "outputs" => step.outputs = Some(self.patterns(&path, value, sets)),
                    "limits" => step.limits = self.limits(&path, value),
                    _ => self.unknown_key(key, STEP_KEYS, &format!("a step of lane `{lane}`")),
                }
            }
            let here = item.span();
            match name_span {
                None => self.sink.push(
                    "catalog::step-name",
                    here.clone(),
                    format!("a step of lane `{lane}` has no `name`"),
                    "step without a name",
                    Some("add `name = \"...\"`, unique within the lane".into()),
                ),
                Some(span) => {
                    if let Some(first) = seen.get(&step.name) {
                        let (line, _) = self.sink.source().line_col(first.start);
                        self.sink.push(
                            "catalog::duplicate-step",
                            span.clone(),
                            format!("lane `{lane}` has two steps named `{}`", step.name),
                            "duplicate step name",
                            Some(format!(
                                "the first is on line {line}; step names must be unique in a lane"
                            )),
                        );
                    } else {
                        seen.insert(step.name.clone(), span);
                    }
                }
            }
            if !has_run {
                self.sink.push(
                    "catalog::step-run",
                    here,
                    format!("step `{}` of lane `{lane}` has no `run`", step.name),
                    "step without a command",
                    Some("add `run = \"...\"`: the script to run".into()),
                );
            }
            steps.push(step);
        }
        steps
    }

    fn env_name(&mut self, name: &str, span: Range<usize>) {
        if !crate::catalog::is_env_name(name) {
            self.sink.push(
                "catalog::env-name",
                span,
                format!("invalid environment variable name `{name}`"),
                "invalid name",
                Some("use letters, digits and `_`, not starting with a digit".into()),
            );
        } else if name.starts_with("LANES_") {
            self.sink.push(
                "catalog::env-name",
                span,
                format!("`{name}` is reserved"),
                "reserved name",
                Some("lanes sets LANES_* variables itself; pick another name".into()),
            );
        }
    }

    fn check_refs(
        &mut self,
        lanes: &[Lane],
        refs: &[LaneRefs],
        groups: &BTreeMap<String, Group>,
        pins: &BTreeMap<String, Pin>,
    ) {
        for (lane, refs) in lanes.iter().zip(refs) {
            for (need, span) in lane.needs.iter().zip(&refs.needs) {
                if !self.lane_names.contains(need) {
                    let help =
                        did_you_mean(need, self.lane_names.iter().map(String::as_str), || {
                            "`needs` names other lanes of this catalog".into()
                        });
                    self.sink.push(
                        "catalog::unknown-lane",
                        span.clone(),
                        format!("lane `{}` needs `{need}`, which is not a lane", lane.name),
                        "unknown lane",
                        Some(help),
                    );
                }
            }
            if let (Some(group), Some(span)) = (&lane.concurrency, &refs.concurrency)
                && !groups.contains_key(group)
            {
                let help = did_you_mean(group, groups.keys().map(String::as_str), || {
                    format!("define it: `[group.{group}]` with `limit = 1`")
                });
                self.sink.push(
                    "catalog::undefined-group",
                    span.clone(),
                    format!("undefined concurrency group `{group}`"),
                    "no such [group]",
                    Some(help),
                );
            }
            for (pin, span) in lane.pins.iter().zip(&refs.pins) {
                if !pins.contains_key(pin) {
                    let help = did_you_mean(pin, pins.keys().map(String::as_str), || {
                        format!(
                            "declare it under [pins]: `{pin} = {{ command = \"...\", expect = \"...\" }}`"
                        )
                    });
                    self.sink.push(
                        "catalog::undefined-pin",
                        span.clone(),
                        format!("undefined pin `{pin}`"),
                        "not declared in [pins]",
                        Some(help),
                    );
                }
            }
        }
    }

    /// Every cycle in `needs`, each reported once, at the first lane of the cycle in file order.
    fn check_cycles(&mut self, lanes: &[Lane], refs: &[LaneRefs]) {
        let index: HashMap<&str, usize> = lanes
            .iter()
            .enumerate()
            .map(|(i, l)| (l.name.as_str(), i))
            .collect();
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let mut marks = vec![Mark::New; lanes.len()];
        let mut reported: BTreeSet<Vec<usize>> = BTreeSet::new();
        for start in 0..lanes.len() {
            if marks[start] != Mark::New {
                continue;
            }
            // Iterative DFS keeping the path, so a back edge names the exact cycle.
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            marks[start] = Mark::Active;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                let needs = &lanes[node].needs;
                if *next < needs.len() {
                    let edge = *next;
                    *next += 1;
                    let Some(&to) = index.get(needs[edge].as_str()) else {
                        continue;
                    };
                    match marks[to] {
                        Mark::New => {
                            marks[to] = Mark::Active;
                            stack.push((to, 0));
                        }
                        Mark::Active => {
                            let from = stack.iter().position(|(n, _)| *n == to).unwrap_or(0);
                            let cycle: Vec<usize> = stack[from..].iter().map(|(n, _)| *n).collect();
                            let mut canonical = cycle.clone();
                            canonical.sort_unstable();
                            if reported.insert(canonical) {
                                self.report_cycle(lanes, refs, &cycle);
                            }
                        }
                        Mark::Done => {}
                    }
                } else {
                    marks[node] = Mark::Done;
                    stack.pop();
                }
            }
        }
    }

    fn report_cycle(&mut self, lanes: &[Lane], refs: &[LaneRefs], cycle: &[usize]) {
        // Start the description at the lane that comes first in the file.
        let first = (0..cycle.len())
            .min_by_key(|&i| refs[cycle[i]].name.start)
            .unwrap_or(0);
        let ordered: Vec<usize> = cycle[first..]
            .iter()
            .chain(&cycle[..first])
            .copied()
            .collect();
        let mut names: Vec<&str> = ordered.iter().map(|&i| lanes[i].name.as_str()).collect();
        names.push(names[0]);
        let head = ordered[0];
        let next = &lanes[ordered.get(1).copied().unwrap_or(head)].name;
        let span = lanes[head]
            .needs
            .iter()
            .position(|n| n == next)
            .map_or_else(|| refs[head].name.clone(), |i| refs[head].needs[i].clone());
        self.sink.push(
            "catalog::cycle",
            span,
            format!("`needs` forms a cycle: {}", names.join(" -> ")),
            "the cycle starts here",
            Some("remove one of these `needs` so the lanes can run in order".into()),
        );
    }
}

const PIN_KEYS: &[&str] = &["command", "expect", "ensure", "pass-env"];

fn pins_table(sink: &mut Sink<'_>, table: &DeTable<'_>) -> BTreeMap<String, Pin> {
    let mut pins = BTreeMap::new();
    for (name, value) in table.iter() {
        let name_str = name.get_ref().to_string();
        let DeValue::Table(fields) = value.get_ref() else {
            sink.push(
                "catalog::pin",
                value.span(),
                format!(
                    "pin `{name_str}` must be a table, not {}",
                    kind(value.get_ref())
                ),
                "expected a table",
                Some(format!(
                    "write `{name_str} = {{ command = \"...\", expect = \"...\" }}`"
                )),
            );
            continue;
        };
        let mut command = None;
        let mut expect = None;
        let mut ensure = None;
        let mut pass_env = Vec::new();
        for (key, value) in fields.iter() {
            let slot = match key.get_ref().as_ref() {
                "command" => &mut command,
                "expect" => &mut expect,
                "ensure" => &mut ensure,
                "pass-env" => {
                    let items = match value.get_ref() {
                        DeValue::Array(items) => items.iter().collect(),
                        _ => vec![value],
                    };
                    for item in items {
                        match item.get_ref() {
                            DeValue::String(s) => pass_env.push(s.to_string()),
                            other => sink.push(
                                "catalog::type",
                                item.span(),
                                format!(
                                    "`pass-env` of pin `{name_str}` must be an array of strings, \
                                     not {}",
                                    kind(other)
                                ),
                                "expected an array of strings",
                                None,
                            ),
                        }
                    }
                    continue;
                }
                other => {
                    let help = did_you_mean(other, PIN_KEYS.iter().copied(), || {
                        "a pin has `command`, `expect` and optionally `ensure` and `pass-env`"
                            .into()
                    });
                    sink.push(
                        "catalog::unknown-key",
                        key.span(),
                        format!("unknown key `{other}` in pin `{name_str}`"),
                        "unknown key",
                        Some(help),
                    );
                    continue;
                }
            };
            match value.get_ref() {
                DeValue::String(s) => *slot = Some(s.trim().to_owned()),
                other => sink.push(
                    "catalog::type",
                    value.span(),
                    format!(
                        "`{}` of pin `{name_str}` must be a string, not {}",
                        key.get_ref(),
                        kind(other)
                    ),
                    "expected a string",
                    None,
                ),
            }
        }
        match (command, expect) {
            (Some(command), Some(expect)) => {
                pins.insert(
                    name_str,
                    Pin {
                        command,
                        expect,
                        ensure,
                        pass_env,
                    },
                );
            }
            (command, _) => sink.push(
                "catalog::pin",
                name.span(),
                format!(
                    "pin `{name_str}` has no `{}`",
                    if command.is_none() { "command" } else { "expect" }
                ),
                "incomplete pin",
                Some("a pin needs `command` (what prints the version) and `expect` (its exact output)".into()),
            ),
        }
    }
    pins
}

fn text_of(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("\"{s}\""),
        DeValue::Integer(i) => i.as_str().to_owned(),
        DeValue::Float(f) => f.as_str().to_owned(),
        DeValue::Boolean(b) => b.to_string(),
        other => kind(other).to_owned(),
    }
}

/// `90s`, `30m`, `1h30m`, `2h`, `1d`: one or more `<integer><unit>` groups, total above zero.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match rest[..unit_len].trim() {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(factor)?)?;
        rest = rest[unit_len..].trim_start();
    }
    (total > 0).then(|| Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::DEFAULT_SHELL;

    fn no_files(path: &str) -> Result<String, String> {
        Err(format!("no file `{path}` in this test"))
    }

    fn ok(text: &str) -> Catalog {
        match parse(&Source::new("lanes.toml", text), &mut no_files) {
            Ok(c) => c,
            Err(e) => panic!("expected a valid catalog, got {:#?}", e.diagnostics),
        }
    }

    fn errors(text: &str) -> Vec<Diagnostic> {
        match parse(&Source::new("lanes.toml", text), &mut no_files) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.diagnostics,
        }
    }

    fn codes(text: &str) -> Vec<&'static str> {
        errors(text).into_iter().map(|d| d.code).collect()
    }

    const FULL: &str = r#"
version = 1

[paths]
rust = ["crates/**", "Cargo.toml", "Cargo.lock"]
docs = ["docs/", "*.md"]

[pins]
rustc = { command = "rustc --version", expect = "rustc 1.95.0 (59807616e 2026-04-14)" }

[group.mac]
limit = 1

[lane.fmt]
[[lane.fmt.step]]
name = "fmt"
run = "cargo fmt --check"

[lane.test]
title = "Rust tests"
class = "advisory"
paths = ["@rust", "!crates/**/README.md"]
inputs = ["@rust", "!@docs"]
needs = ["fmt"]
concurrency = "mac"
scope = "compile"
labels = ["linux"]
timeout = "30m"
cancel-superseded = false
pins = ["rustc"]
cache-mounts = ["target"]

[[lane.test.step]]
name = "build"
run = "cargo build --workspace --tests"

[[lane.test.step]]
name = "test"
run = "cargo test --workspace"
shell = "sh -c"
env = { RUST_BACKTRACE = "1" }
pass-env = ["HOME_CACHE"]
timeout = "1h30m"
cache = false
network = true
outputs = ["target/report.xml"]

[lane.nightly-bench]
class = "nightly"
schedule = "0 3 * * *"
[[lane.nightly-bench.step]]
name = "bench"
run = "cargo bench"
"#;

    #[test]
    fn parses_every_key() {
        let c = ok(FULL);
        assert_eq!(c.version, 1);
        assert_eq!(
            c.lanes.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["fmt", "test", "nightly-bench"]
        );
        let fmt = c.lane("fmt").expect("fmt lane");
        assert_eq!(fmt.class, LaneClass::Required, "class defaults to required");
        assert!(fmt.paths.is_none() && fmt.inputs.is_none());
        assert_eq!(fmt.steps[0].shell(), DEFAULT_SHELL);
        assert!(fmt.steps[0].cache && !fmt.steps[0].network);
        assert!(fmt.cancel_superseded, "cancel-superseded defaults to true");

        let test = c.lane("test").expect("test lane");
        assert_eq!(test.title.as_deref(), Some("Rust tests"));
        assert_eq!(test.class, LaneClass::Advisory);
        let texts = |g: &Option<Vec<Glob>>| {
            g.as_ref()
                .expect("set")
                .iter()
                .map(|g| g.text.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            texts(&test.paths),
            [
                "crates/**",
                "Cargo.toml",
                "Cargo.lock",
                "!crates/**/README.md"
            ]
        );
        assert_eq!(
            texts(&test.inputs),
            ["crates/**", "Cargo.toml", "Cargo.lock", "!docs/", "!*.md"]
        );
        assert_eq!(test.needs, ["fmt"]);
        assert_eq!(test.concurrency.as_deref(), Some("mac"));
        assert_eq!(test.scope.as_deref(), Some("compile"));
        assert_eq!(test.labels, ["linux"]);
        assert_eq!(test.timeout, Some(Duration::from_secs(1800)));
        assert!(!test.cancel_superseded);
        assert_eq!(test.pins, ["rustc"]);
        assert_eq!(test.cache_mounts, ["target"]);
        let step = &test.steps[1];
        assert_eq!(step.shell(), "sh -c");
        assert_eq!(
            step.env.get("RUST_BACKTRACE").map(String::as_str),
            Some("1")
        );
        assert_eq!(step.pass_env, ["HOME_CACHE"]);
        assert_eq!(step.timeout, Some(Duration::from_secs(5400)));
        assert!(!step.cache && step.network);
        assert_eq!(texts(&step.outputs), ["target/report.xml"]);
        assert_eq!(c.groups["mac"].limit, 1);
        assert_eq!(
            c.pins["rustc"].expect,
            "rustc 1.95.0 (59807616e 2026-04-14)"
        );
        assert_eq!(
            c.lane("nightly-bench").and_then(|l| l.schedule.as_deref()),
            Some("0 3 * * *")
        );
    }

    #[test]
    fn reads_pins_from_a_file() {
        let text = "version = 1\npins = \"ci/pins.toml\"\n[lane.a]\npins = [\"xcode\"]\n\
                    [[lane.a.step]]\nname = \"s\"\nrun = \"true\"\n";
        let mut asked = Vec::new();
        let mut load = |path: &str| {
            asked.push(path.to_owned());
            Ok(
                "xcode = { command = \"xcodebuild -version\", expect = \"Xcode 16.2\" }\n"
                    .to_owned(),
            )
        };
        let c = parse(&Source::new("lanes.toml", text), &mut load).expect("valid");
        assert_eq!(asked, ["ci/pins.toml"]);
        assert_eq!(c.pins_file.as_deref(), Some("ci/pins.toml"));
        assert_eq!(c.pins["xcode"].expect, "Xcode 16.2");
    }

    #[test]
    fn a_missing_pins_file_is_an_error_at_its_name() {
        let d = errors("version = 1\npins = \"ci/pins.toml\"\n");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, "catalog::pins-file");
        assert_eq!((d[0].line, d[0].column), (2, 8));
    }

    #[test]
    fn a_pins_file_outside_the_repository_is_an_error() {
        for path in ["../pins.toml", "/etc/pins.toml", "ci/../../pins.toml"] {
            let d = errors(&format!("version = 1\npins = \"{path}\"\n"));
            assert_eq!(d.len(), 1, "{path}: {d:#?}");
            assert_eq!(
                d[0].message,
                format!("pins file `{path}` is outside the repository")
            );
        }
    }

    #[test]
    fn a_lane_needs_at_least_one_step() {
        assert_eq!(
            codes("version = 1\n[lane.a]\nstep = []\n"),
            ["catalog::no-steps"]
        );
        assert_eq!(
            codes("version = 1\n[lane.a]\ntitle = \"A\"\n"),
            ["catalog::no-steps"]
        );
    }

    #[test]
    fn errors_in_the_pins_file_point_into_it() {
        let text = "version = 1\npins = \"pins.toml\"\n";
        let mut load = |_: &str| Ok("a = { command = \"x\", expct = \"1\" }\n".to_owned());
        let err = parse(&Source::new("lanes.toml", text), &mut load).expect_err("invalid");
        let files: Vec<&str> = err.diagnostics.iter().map(|d| d.file.as_str()).collect();
        assert_eq!(files, ["pins.toml", "pins.toml"]);
        assert_eq!(
            err.diagnostics[0].help.as_deref(),
            Some("did you mean `expect`?")
        );
        assert_eq!(err.sources.len(), 2);
    }

    #[test]
    fn a_pin_may_carry_an_ensure_command() {
        let c = ok(
            "version = 1\n[pins]\nsim = { command = \"sim --version\", expect = \"17.2\", \
                    ensure = \" sim install 17.2 \" }\nplain = { command = \"p\", expect = \"1\" }\n",
        );
        assert_eq!(c.pins["sim"].ensure.as_deref(), Some("sim install 17.2"));
        assert_eq!(c.pins["plain"].ensure, None);
        assert!(c.pins["plain"].pass_env.is_empty());
        let c = ok(
            "version = 1\n[pins]\nrustc = { command = \"rustc -V\", expect = \"1\", \
                    pass-env = [\"RUSTUP_HOME\", \"CARGO_HOME\"] }\n",
        );
        assert_eq!(c.pins["rustc"].pass_env, ["RUSTUP_HOME", "CARGO_HOME"]);
        let d = errors(
            "version = 1\n[pins]\nr = { command = \"r\", expect = \"1\", pass-env = [1] }\n",
        );
        assert_eq!(d[0].code, "catalog::type");
        let d = errors(
            "version = 1\n[pins]\nsim = { command = \"s\", expect = \"1\", ensur = \"i\" }\n",
        );
        assert_eq!(d[0].code, "catalog::unknown-key");
        assert_eq!(d[0].help.as_deref(), Some("did you mean `ensure`?"));
        let d =
            errors("version = 1\n[pins]\nsim = { command = \"s\", expect = \"1\", ensure = 1 }\n");
        assert_eq!(d[0].code, "catalog::type");
    }

    #[test]
    fn syntax_errors_are_reported_with_a_location() {
        let d = errors("version = 1\n[lane.a\n");
        assert_eq!(d[0].code, "catalog::syntax");
        assert_eq!(d[0].line, 2);
    }

    #[test]
    fn version_is_required_and_checked() {
        assert_eq!(
            codes("[lane.a]\n[[lane.a.step]]\nname='a'\nrun='b'\n"),
            ["catalog::version"]
        );
        let d = errors("version = 2\n");
        assert_eq!(d[0].code, "catalog::version");
        assert_eq!(d[0].message, "unsupported catalog version 2");
    }

    #[test]
    fn unknown_keys_suggest_the_nearest_known_key() {
        let d = errors(
            "version = 1\n[lane.a]\nconcurency = \"g\"\n[[lane.a.step]]\nname = \"s\"\nrun = \"x\"\nenvv = {}\n",
        );
        assert_eq!(d.len(), 2, "{d:#?}");
        assert_eq!(d[0].message, "unknown key `concurency` in lane `a`");
        assert_eq!(d[0].help.as_deref(), Some("did you mean `concurrency`?"));
        assert_eq!((d[0].line, d[0].column), (3, 1));
        assert_eq!(d[1].help.as_deref(), Some("did you mean `env`?"));
    }

    #[test]
    fn wrong_types_are_errors() {
        let d = errors(
            "version = 1\n[lane.a]\nneeds = \"b\"\ntimeout = 30\n[[lane.a.step]]\nname = \"s\"\nrun = \"x\"\ncache = \"no\"\n",
        );
        let messages: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "`lane.a.needs` must be an array of strings, not a string",
                "`lane.a.timeout` must be a string, not an integer",
                "`lane.a.step.cache` must be true or false, not a string",
            ]
        );
    }

    #[test]
    fn cancel_superseded_is_a_boolean_with_a_help_line() {
        let lane = |value: &str| {
            format!(
                "version = 1\n[lane.a]\ncancel-superseded = {value}\n\
                 [[lane.a.step]]\nname = \"s\"\nrun = \"x\"\n"
            )
        };
        assert!(ok(&lane("true")).lanes[0].cancel_superseded);
        assert!(!ok(&lane("false")).lanes[0].cancel_superseded);
        for (value, kind) in [("\"no\"", "a string"), ("0", "an integer")] {
            let d = errors(&lane(value));
            assert_eq!(d.len(), 1, "{value}: {d:#?}");
            assert_eq!(d[0].code, "catalog::type");
            assert_eq!(
                d[0].message,
                format!("`lane.a.cancel-superseded` must be true or false, not {kind}")
            );
            assert_eq!((d[0].line, d[0].column), (3, 21), "points at the value");
            assert_eq!(d[0].span.len(), value.len());
            assert_eq!(
                d[0].help.as_deref(),
                Some(
                    "write `cancel-superseded = true` or `cancel-superseded = false`, without quotes"
                )
            );
        }
    }

    #[test]
    fn a_misspelt_cancel_superseded_is_suggested() {
        for typo in ["cancel-supersede", "cancel_superseded", "cancelsuperseded"] {
            let d = errors(&format!(
                "version = 1\n[lane.a]\n{typo} = false\n[[lane.a.step]]\nname = \"s\"\nrun = \"x\"\n"
            ));
            assert_eq!(d.len(), 1, "{typo}: {d:#?}");
            assert_eq!(d[0].message, format!("unknown key `{typo}` in lane `a`"));
            assert_eq!(
                d[0].help.as_deref(),
                Some("did you mean `cancel-superseded`?"),
                "{typo}"
            );
        }
    }

    #[test]
    fn needs_cycles_name_the_cycle_once() {
        let lane = |name: &str, needs: &str| {
            format!(
                "[lane.{name}]\nneeds = [{needs}]\n[[lane.{name}.step]]\nname = \"s\"\nrun = \"x\"\n"
            )
        };
        let text = format!(
            "version = 1\n{}{}{}{}",
            lane("a", "\"b\""),
            lane("b", "\"c\""),
            lane("c", "\"a\""),
            lane("d", "\"d\"")
        );
        let d = errors(&text);
        let messages: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "`needs` forms a cycle: a -> b -> c -> a",
                "`needs` forms a cycle: d -> d"
            ]
        );
        assert_eq!(d[0].line, 3, "points at a's `needs`");
    }

    #[test]
    fn a_lane_may_need_a_lane_defined_later() {
        ok(
            "version = 1\n[lane.a]\nneeds = [\"b\"]\n[[lane.a.step]]\nname = \"s\"\nrun = \"x\"\n\
            [lane.b]\n[[lane.b.step]]\nname = \"s\"\nrun = \"x\"\n",
        );
    }

    #[test]
    fn schedule_rules() {
        let step = "[[lane.n.step]]\nname = \"s\"\nrun = \"x\"\n";
        assert_eq!(
            codes(&format!(
                "version = 1\n[lane.n]\nclass = \"nightly\"\n{step}"
            )),
            ["catalog::schedule"]
        );
        assert_eq!(
            codes(&format!(
                "version = 1\n[lane.n]\nschedule = \"0 3 * * *\"\n{step}"
            )),
            ["catalog::schedule"]
        );
        assert_eq!(
            codes(&format!(
                "version = 1\n[lane.n]\nclass = \"nightly\"\nschedule = \"61 3 * * *\"\n{step}"
            )),
            ["catalog::cron"]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        for bad in ["", "0s", "30", "m", "1x", "-5m", "1.5h", "30 minutes"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    /// Every kind of error the catalog can have, in one file: all are reported in one pass.
    const BROKEN: &str = include_str!("../testdata/broken.toml");

    #[test]
    fn every_error_in_one_pass() {
        let rendered: String = errors(BROKEN)
            .iter()
            .map(|d| {
                format!(
                    "{}:{}:{} [{}] {}\n  label: {}\n  help: {}\n",
                    d.file,
                    d.line,
                    d.column,
                    d.code,
                    d.message,
                    d.label,
                    d.help.as_deref().unwrap_or("-")
                )
            })
            .collect();
        insta::assert_snapshot!(rendered);
    }

    #[test]
    fn limits_are_read_for_lanes_and_steps() {
        let catalog = ok(r#"
version = 1
[lane.t]
limits = { memory = "4G", pids = 4096, cpus = 2 }
[[lane.t.step]]
name = "s"
run = "true"
limits = { memory = "512M", cpus = 1.5 }
"#);
        let lane = &catalog.lanes[0];
        assert_eq!(
            lane.limits,
            Limits {
                memory: Some(4 << 30),
                pids: Some(4096),
                cpus: Some(2.0)
            }
        );
        let step = lane.steps[0].limits.or(lane.limits);
        assert_eq!(
            step,
            Limits {
                memory: Some(512 << 20),
                pids: Some(4096),
                cpus: Some(1.5)
            }
        );
    }

    #[test]
    fn bad_limits_are_reported_each_with_its_reason() {
        let diagnostics = errors(
            r#"
version = 1
[lane.t]
limits = { memory = "4X", pids = 0, cpus = "2", swap = 1 }
step = [{ name = "s", run = "true", limits = { memory = 64 } }]
"#,
        );
        let codes: Vec<&str> = diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(
            codes,
            [
                "catalog::limits",
                "catalog::limits",
                "catalog::limits",
                "catalog::unknown-key",
                "catalog::limits"
            ],
            "{diagnostics:#?}"
        );
        assert!(diagnostics[0].message.contains("lane.t.limits.memory"));
    }

    #[test]
    fn sizes_take_binary_units() {
        use crate::catalog::parse_size;
        assert_eq!(parse_size("4G"), Some(4 << 30));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("4X"), None);
        assert_eq!(parse_size("G"), None);
        assert_eq!(parse_size("99999999999T"), None);
    }
}
