//! The tree users read: one per release. Pure: views and "now" in, text out.
//!
//! On a terminal ([`Style::tty`]) it has colours, box-drawing branches and symbols (✔ ✖ ⚠ …);
//! piped ([`Style::plain`]) it is plain ASCII with words, so `grep` and diffs work.

use std::fmt::Write as _;

use k8s_openapi::jiff::Timestamp;
use routemap_index::gateway::{Acceptance, ParentAnswer};

use crate::model::{ExplainView, ReleaseView, RequestView, Role, RouteState, VersionView};
use crate::requests::Outcome;

/// How text is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours, Unicode branches and symbols.
    pub tty: bool,
}

impl Style {
    /// For a terminal.
    pub fn tty() -> Self {
        Style { tty: true }
    }

    /// For a pipe or a file.
    pub fn plain() -> Self {
        Style { tty: false }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.tty && !text.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn good(self, text: &str) -> String {
        self.paint("32", text)
    }

    fn bad(self, text: &str) -> String {
        self.paint("31", text)
    }

    fn warn(self, text: &str) -> String {
        self.paint("33", text)
    }

    fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }

    fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    /// `(ok, not ok, pending)` marks in front of a line.
    fn mark(self, state: Mark) -> String {
        match (self.tty, state) {
            (true, Mark::Ok) => self.good("✔"),
            (true, Mark::Bad) => self.bad("✖"),
            (true, Mark::Pending) => self.warn("…"),
            (true, Mark::Warn) => self.warn("⚠"),
            (false, Mark::Ok) => "[ok]".into(),
            (false, Mark::Bad) => "[!!]".into(),
            (false, Mark::Pending) => "[..]".into(),
            (false, Mark::Warn) => "[??]".into(),
        }
    }

    fn arrow(self) -> &'static str {
        if self.tty { "→" } else { "->" }
    }
}

#[derive(Debug, Clone, Copy)]
enum Mark {
    Ok,
    Bad,
    Pending,
    Warn,
}

/// A tree of lines: each node a line and its children.
struct Node {
    line: String,
    children: Vec<Node>,
}

impl Node {
    fn new(line: impl Into<String>) -> Self {
        Node {
            line: line.into(),
            children: Vec::new(),
        }
    }

    fn with(mut self, children: Vec<Node>) -> Self {
        self.children = children;
        self
    }

    fn draw(&self, style: Style, out: &mut String) {
        out.push_str(&self.line);
        out.push('\n');
        draw_children(&self.children, "", style, out);
    }
}

fn draw_children(children: &[Node], prefix: &str, style: Style, out: &mut String) {
    let (mid, last, pipe, space) = if style.tty {
        ("├─ ", "└─ ", "│  ", "   ")
    } else {
        ("|- ", "`- ", "|  ", "   ")
    };
    for (i, child) in children.iter().enumerate() {
        let is_last = i + 1 == children.len();
        let branch = style.dim(if is_last { last } else { mid });
        let _ = writeln!(out, "{}{branch}{}", style.dim(prefix), child.line);
        let next = format!("{prefix}{}", if is_last { space } else { pipe });
        draw_children(&child.children, &next, style, out);
    }
}

/// Every release's tree, separated by a blank line; a line saying so when there is none.
pub fn render(views: &[ReleaseView], now: Timestamp, style: Style, scope: &str) -> String {
    if views.is_empty() {
        return format!("No releases (routemaps labelled iter8.tools/kind=routemap) in {scope}.\n");
    }
    let mut out = String::new();
    for (i, view) in views.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        release_tree(view, now, style).draw(style, &mut out);
    }
    out
}

fn release_tree(view: &ReleaseView, now: Timestamp, style: Style) -> Node {
    let mut head = format!(
        "{} {}",
        style.bold(&format!("Release {}", view.title())),
        style.dim(&format!("(routemap {})", view.routemap))
    );
    if let Some(s) = &view.strategy {
        let _ = write!(head, "  strategy {s}");
    }
    let mut children = Vec::new();
    if let Some(e) = &view.invalid {
        children.push(Node::new(format!(
            "{} {}",
            style.mark(Mark::Bad),
            style.bad(&format!("invalid routemap: {e}"))
        )));
    }
    children.push(route_node(view, style));
    if !view.versions.is_empty() {
        children.push(Node::new("Versions").with(versions(
            &view.versions,
            view.strategy.as_deref(),
            style,
        )));
    }
    if !view.requests.is_empty() || !view.not_sampled.is_empty() {
        let mut reqs = request_nodes(&view.requests, &view.route.state, style);
        for n in &view.not_sampled {
            reqs.push(Node::new(style.dim(&format!("not shown: {n}"))));
        }
        children.push(Node::new("Requests").with(reqs));
    }
    if let Some(node) = controller_node(view, style) {
        children.push(node);
    }
    children.push(events_node(view, now, style));
    Node::new(head).with(children)
}

fn route_node(view: &ReleaseView, style: Style) -> Node {
    let r = &view.route;
    let name = r.name.as_deref().unwrap_or("(unnamed)");
    let mut line = format!("Route HTTPRoute {name}");
    if let Some(g) = r.generation {
        let _ = write!(line, "  generation {g}");
    }
    let state = match r.state {
        RouteState::AsDecided => format!("{} live = decided", style.mark(Mark::Ok)),
        RouteState::Differs => format!(
            "{} {}",
            style.mark(Mark::Pending),
            style.warn("live != decided: the controller has not written the decision yet, or another writer changed the route")
        ),
        RouteState::NotWritten => format!(
            "{} {}",
            style.mark(Mark::Pending),
            style.warn("not written yet")
        ),
        RouteState::NoRoute => style.dim("strategy none: no route is written"),
        RouteState::KeptAsIs => format!(
            "{} {}",
            style.mark(Mark::Warn),
            style.warn("kept as it is while the routemap is invalid")
        ),
    };
    let _ = write!(line, "  {state}");
    let mut parents = Vec::new();
    if let Some(gw) = &r.gateway {
        if gw.parents.is_empty() {
            parents.push(Node::new(format!(
                "{} {}",
                style.mark(Mark::Pending),
                style.warn("no implementation has answered (status.parents is empty)")
            )));
        }
        for p in &gw.parents {
            parents.push(Node::new(parent_line(p, r.generation, style)));
        }
        let acceptance = match gw.acceptance {
            Acceptance::Accepted => style.good("accepted"),
            Acceptance::NotAccepted => style.bad("not accepted"),
            Acceptance::BackendNotResolved => style.bad("backend not resolved"),
            Acceptance::NotYetAccepted => style.warn("not yet accepted"),
        };
        let _ = write!(line, "  gateway: {acceptance}");
    }
    Node::new(line).with(parents)
}

fn parent_line(p: &ParentAnswer, generation: Option<i64>, style: Style) -> String {
    let cond = |name: &str, v: Option<bool>| match (style.tty, v) {
        (true, Some(true)) => style.good(&format!("✔ {name}")),
        (true, Some(false)) => style.bad(&format!("✖ {name}")),
        (true, None) => style.warn(&format!("? {name}")),
        (false, Some(b)) => format!("{name}={}", if b { "True" } else { "False" }),
        (false, None) => format!("{name}=?"),
    };
    let mut line = format!(
        "{}  {}  {}  {}",
        p.parent,
        style.dim(&p.controller),
        cond("Accepted", p.accepted),
        cond("ResolvedRefs", p.resolved_refs)
    );
    if let Some(seen) = p.observed_generation {
        match generation {
            Some(g) if seen < g => {
                let _ = write!(
                    line,
                    "  {}",
                    style.warn(&format!(
                        "observed generation {seen} of {g} (not caught up)"
                    ))
                );
            }
            _ => {
                let _ = write!(line, "  observed generation {seen}");
            }
        }
    }
    if p.accepted == Some(false) || p.resolved_refs == Some(false) {
        let reason = p.reason.as_deref().unwrap_or("no reason given");
        let said = match &p.message {
            Some(m) => format!("{reason}: {m}"),
            None => reason.to_string(),
        };
        let _ = write!(line, "  {}", style.bad(&said));
    }
    line
}

fn versions(versions: &[VersionView], strategy: Option<&str>, style: Style) -> Vec<Node> {
    let width = versions.iter().map(|v| v.name.len()).max().unwrap_or(0);
    versions
        .iter()
        .map(|v| {
            let role = match v.role {
                Role::Primary => "primary  ",
                Role::Candidate => "candidate",
            };
            let what = match (strategy, v.role) {
                (_, _) if !v.matches.is_empty() => format!("matches {}", v.matches.join(" | ")),
                (Some("canary"), Role::Primary) => "catch-all".to_string(),
                (Some("mirror"), Role::Primary) => "serves all requests".to_string(),
                (Some("mirror"), Role::Candidate) => format!("mirror {}%", v.weight),
                _ => format!("weight {}", v.weight),
            };
            let state = if v.available {
                format!("{} {}", style.mark(Mark::Ok), style.good("available"))
            } else {
                let why = v.reason.as_deref().unwrap_or("unknown reason");
                format!(
                    "{} {}",
                    style.mark(Mark::Bad),
                    style.bad(&format!("unavailable: {why}"))
                )
            };
            let mut line = format!("{:width$}  {role}  {state}  {what}", v.name);
            // A guarded candidate: withdrawn (and why), or what it is judged on.
            if let Some(g) = &v.guard {
                let _ = write!(line, "  guard: {g}");
            }
            let warnings = v
                .warnings
                .iter()
                .map(|w| Node::new(format!("{} {}", style.mark(Mark::Warn), style.warn(w))))
                .collect();
            Node::new(line).with(warnings)
        })
        .collect()
}

fn request_nodes(requests: &[RequestView], state: &RouteState, style: Style) -> Vec<Node> {
    let width = requests.iter().map(|r| r.request.len()).max().unwrap_or(0);
    requests
        .iter()
        .map(|r| {
            let shown = r.live.as_ref().or(r.decided.as_ref());
            let mut line = format!(
                "{:width$}  {} {}",
                r.request,
                style.arrow(),
                shown.map(|o| outcome_text(o, style)).unwrap_or_default()
            );
            if r.live.is_none() && r.decided.is_some() {
                let _ = write!(line, "  {}", style.dim("(decided; no live route)"));
            }
            if let (Some(live), Some(decided)) = (&r.live, &r.decided)
                && !live.same_answer(decided)
                && *state != RouteState::KeptAsIs
            {
                let _ = write!(
                    line,
                    "  {}",
                    style.warn(&format!("(decided: {})", decided.summary()))
                );
            }
            if let Some(v) = &r.for_version {
                let _ = write!(line, "  {}", style.dim(&format!("({v}'s match)")));
            }
            Node::new(line)
        })
        .collect()
}

fn outcome_text(o: &Outcome, style: Style) -> String {
    if o.rule.is_none() || o.backends.is_empty() {
        style.bad(&o.summary())
    } else {
        style.bold(&o.summary())
    }
}

fn controller_node(view: &ReleaseView, style: Style) -> Option<Node> {
    let s = view.controller_status.as_ref()?;
    // Its judged resourceVersion is not compared with the routemap's current one: writing the
    // status annotation on the routemap moves the latter on by itself.
    let mut line = "Controller reported".to_string();
    if let Some(seen) = &s.observed_resource_version {
        let _ = write!(line, " (routemap resourceVersion {seen})");
    }
    let _ = write!(line, ": strategy {}", s.strategy.as_deref().unwrap_or("?"));
    if !s.available_versions.is_empty() {
        let _ = write!(line, ", available {}", s.available_versions.join(", "));
    } else {
        let _ = write!(line, ", no version available");
    }
    if let Some(g) = s.route_generation {
        let _ = write!(line, ", route generation {g}");
    }
    if let Some(e) = &s.last_error {
        let _ = write!(line, ", {}", style.bad(&format!("last error: {e}")));
    }
    Some(Node::new(line))
}

fn events_node(view: &ReleaseView, now: Timestamp, style: Style) -> Node {
    if view.events.is_empty() {
        return Node::new(format!("Events {}", style.dim("(none)")));
    }
    let head = if view.event_count > view.events.len() {
        format!(
            "Events (last {} of {})",
            view.events.len(),
            view.event_count
        )
    } else {
        "Events".to_string()
    };
    let ages: Vec<String> = view
        .events
        .iter()
        .map(|e| age(e.time.as_deref(), now))
        .collect();
    let age_w = ages.iter().map(String::len).max().unwrap_or(0);
    let reason_w = view
        .events
        .iter()
        .map(|e| e.reason.len())
        .max()
        .unwrap_or(0);
    let children = view
        .events
        .iter()
        .zip(&ages)
        .map(|(e, age)| {
            let kind = if e.kind == "Warning" {
                style.warn("Warning")
            } else {
                "Normal ".to_string()
            };
            Node::new(format!(
                "{age:>age_w$}  {kind}  {:reason_w$}  {}",
                e.reason, e.message
            ))
        })
        .collect();
    Node::new(head).with(children)
}

/// kubectl's short ages: `45s`, `12m`, `3h`, `2d`; `?` without a time.
pub fn age(time: Option<&str>, now: Timestamp) -> String {
    let Some(t) = time.and_then(|t| t.parse::<Timestamp>().ok()) else {
        return "?".into();
    };
    let secs = now.as_second().saturating_sub(t.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// What `kubectl iter8 explain` prints: who serves the request now, and why.
pub fn render_explain(view: &ExplainView, style: Style) -> String {
    let mut out = String::new();
    let r = &view.release;
    let route = r.route.name.as_deref().unwrap_or("(unnamed)");
    let _ = writeln!(
        out,
        "{} {} {}",
        style.bold(&format!("{}:", r.title())),
        view.request,
        style.arrow()
    );
    let mut lines: Vec<String> = Vec::new();
    match (&view.live, &view.decided) {
        (Some(live), _) => {
            let generation = r
                .route
                .generation
                .map(|g| format!(" (generation {g})"))
                .unwrap_or_default();
            lines.push(format!(
                "served by {} on the live HTTPRoute {}/{route}{generation}",
                outcome_text(live, style),
                r.namespace
            ));
            if let Some(m) = &live.matched {
                lines.push(format!("matched: {m}"));
            }
        }
        (None, Some(decided)) => lines.push(format!(
            "no live HTTPRoute {route} yet; the controller decided {}",
            outcome_text(decided, style)
        )),
        (None, None) => lines.push(style.bad("no live route and no decided route").to_string()),
    }
    if let (Some(live), Some(decided)) = (&view.live, &view.decided)
        && !live.same_answer(decided)
    {
        lines.push(style.warn(&format!(
            "the live route is not the decided one: the controller decided {}",
            decided.summary()
        )));
    }
    if let Some(e) = &r.invalid {
        lines.push(style.bad(&format!(
            "routemap invalid ({e}): the live route is left as it is"
        )));
    }
    // Meant for someone else: the route with every version available sends it elsewhere.
    let now = view.live.as_ref().or(view.decided.as_ref());
    if let (Some(meant), Some(now)) = (&view.if_all_available, now)
        && meant.single() != now.single()
        && let Some(target) = meant.single()
        && let Some(v) = r.versions.iter().find(|v| v.name == target)
        && !v.available
    {
        lines.push(style.warn(&format!(
            "this request is for {target} ({}), which is unavailable: {}",
            meant.matched.as_deref().unwrap_or("its match"),
            v.reason.as_deref().unwrap_or("unknown reason")
        )));
    }
    let state: Vec<String> = r
        .versions
        .iter()
        .map(|v| {
            format!(
                "{} {}",
                v.name,
                if v.available {
                    "available"
                } else {
                    "unavailable"
                }
            )
        })
        .collect();
    if !state.is_empty() {
        lines.push(format!("versions: {}", state.join(", ")));
    }
    for l in lines {
        let _ = writeln!(out, "  {l}");
    }
    out
}
