//! Regular expressions of a routemap: checked against what gateways accept, compiled once.
//!
//! Gateway API leaves the regex dialect to each implementation; Envoy (and so Envoy Gateway,
//! Istio, Contour, ...) compiles RE2 and refuses a regex whose RE2 *program size* (its number of
//! instructions) is over `re2.max_program_size.error_level`, 100 by default. A route holding such
//! a regex is refused by the gateway, so a routemap holding one is refused here first:
//! [`program_size`] estimates the RE2 program size from the pattern's syntax tree, counting the
//! way RE2's compiler does but without its sharing of common suffixes, so the estimate is at
//! least RE2's figure (`/asdf/.*`: 27 here, 24 in RE2).
//!
//! Each regex is compiled once per spec, by validation, and kept in the spec's [`Regexes`]
//! (shared, behind an `Arc`): a decision never compiles one, and `explain` reuses them.
//! The limits and the reasons for them are in `docs/routemap.md`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use regex_lite::{Regex, RegexBuilder};
use regex_syntax::ast::{
    self, Ast, ClassPerlKind, ClassSet, ClassSetItem, GroupKind, RepetitionKind, RepetitionRange,
};

/// Longest pattern accepted, in bytes.
pub const MAX_REGEX_LEN: usize = 256;
/// Largest estimated RE2 program size of one regex: Envoy's default `max_program_size`.
pub const MAX_PROGRAM_SIZE: usize = 100;
/// Largest sum of the estimated program sizes of all regexes of one routemap.
pub const MAX_ROUTEMAP_PROGRAM_SIZE: usize = 4_000;
/// Largest compiled form (bytes of `regex-lite`'s NFA) of one regex.
pub const MAX_COMPILED_BYTES: usize = 64 * 1024;
/// Deepest nesting of groups and repetitions.
pub const MAX_NESTING: u32 = 32;
/// RE2's largest repetition count (`{n,m}`).
const MAX_REPEAT: u32 = 1000;

/// RE2's any-byte-sequence for the runes 0x80-0x10FFFF (what `.` and a negated class match
/// beyond ASCII), in instructions, rounded up.
const NON_ASCII: usize = 12;
/// The instructions every program has: fail, match, and the unanchored-search prefix.
const OVERHEAD: usize = 5;

/// Estimates the RE2 program size of a pattern, or says why the pattern is refused.
pub fn program_size(pattern: &str) -> Result<usize, String> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(format!(
            "a regular expression of {} bytes; at most {MAX_REGEX_LEN} are accepted",
            pattern.len()
        ));
    }
    let ast = ast::parse::ParserBuilder::new()
        .nest_limit(MAX_NESTING)
        .build()
        .parse(pattern)
        .map_err(|e| format!("invalid regular expression: {}", e.kind()))?;
    let fold = folds_case(&ast);
    let size = OVERHEAD.saturating_add(size_of(&ast, fold)?);
    if size > MAX_PROGRAM_SIZE {
        return Err(format!(
            "regular expression too complex: its RE2 program size is about {size}, over {MAX_PROGRAM_SIZE} (Envoy's default re2.max_program_size; gateways refuse larger ones): simplify it, e.g. fewer repetitions, classes or '.'"
        ));
    }
    Ok(size)
}

/// Checks a pattern ([`program_size`]) and compiles it, anchored at both ends as Gateway API
/// matches are (the whole path or value must match).
pub fn compile(pattern: &str) -> Result<(Regex, usize), String> {
    let size = program_size(pattern)?;
    let regex = RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(MAX_COMPILED_BYTES)
        .nest_limit(MAX_NESTING + 2)
        .build()
        .map_err(|e| {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or(&text).trim().to_string();
            format!("invalid regular expression: {first}")
        })?;
    Ok((regex, size))
}

fn folds_case(ast: &Ast) -> bool {
    let has_i = |flags: &ast::Flags| {
        flags
            .items
            .iter()
            .any(|i| i.kind == ast::FlagsItemKind::Flag(ast::Flag::CaseInsensitive))
    };
    match ast {
        Ast::Flags(f) => has_i(&f.flags),
        Ast::Group(g) => match &g.kind {
            GroupKind::NonCapturing(flags) if has_i(flags) => true,
            _ => folds_case(&g.ast),
        },
        Ast::Repetition(r) => folds_case(&r.ast),
        Ast::Alternation(a) => a.asts.iter().any(folds_case),
        Ast::Concat(c) => c.asts.iter().any(folds_case),
        _ => false,
    }
}

/// Instructions of one node (see the module doc). `fold`: case-insensitive somewhere, so every
/// class may double (counted as if everywhere: an overestimate).
fn size_of(ast: &Ast, fold: bool) -> Result<usize, String> {
    Ok(match ast {
        Ast::Empty(_) | Ast::Flags(_) => 0,
        Ast::Literal(l) => l.c.len_utf8() * if fold && !l.c.is_ascii() { 2 } else { 1 },
        Ast::Dot(_) => class_cost(2, true, fold),
        Ast::Assertion(_) => 1,
        Ast::ClassUnicode(_) => return Err(unicode_class()),
        Ast::ClassPerl(p) => {
            let (ranges, high) = perl_ranges(p);
            class_cost(ranges, high, fold)
        }
        Ast::ClassBracketed(c) => {
            let (ranges, high) = set_ranges(&c.kind)?;
            class_cost(ranges, high || c.negated, fold)
        }
        Ast::Repetition(r) => {
            let s = size_of(&r.ast, fold)?;
            let (min, max) = match &r.op.kind {
                RepetitionKind::ZeroOrOne => (0, Some(1)),
                RepetitionKind::ZeroOrMore => (0, None),
                RepetitionKind::OneOrMore => (1, None),
                RepetitionKind::Range(RepetitionRange::Exactly(n)) => (*n, Some(*n)),
                RepetitionKind::Range(RepetitionRange::AtLeast(n)) => (*n, None),
                RepetitionKind::Range(RepetitionRange::Bounded(n, m)) => (*n, Some(*m)),
            };
            if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT) {
                return Err(format!(
                    "invalid regular expression: a repetition count over {MAX_REPEAT} (RE2's limit)"
                ));
            }
            let min = min as usize;
            match max {
                // x{n,}: n copies, the last one looping (x* when n is 0).
                None => s.saturating_mul(min.max(1)).saturating_add(1),
                // x{n,m}: n copies, then m-n optional ones, each with its branch.
                Some(m) => s
                    .saturating_mul(min)
                    .saturating_add((m as usize - min).saturating_mul(s.saturating_add(1))),
            }
        }
        Ast::Group(g) => {
            let captures = !matches!(g.kind, GroupKind::NonCapturing(_));
            size_of(&g.ast, fold)?.saturating_add(if captures { 2 } else { 0 })
        }
        Ast::Alternation(a) => sum(&a.asts, fold)?.saturating_add(a.asts.len() - 1),
        Ast::Concat(c) => sum(&c.asts, fold)?,
    })
}

fn sum(asts: &[Ast], fold: bool) -> Result<usize, String> {
    asts.iter()
        .try_fold(0usize, |acc, a| Ok(acc.saturating_add(size_of(a, fold)?)))
}

fn unicode_class() -> String {
    "invalid regular expression: Unicode classes (\\p{..}) are not supported".into()
}

/// `ranges` byte ranges (each an instruction, joined by a branch each), plus the non-ASCII tail
/// when the class reaches beyond ASCII; doubled when case folding may add ranges.
fn class_cost(ranges: usize, high: bool, fold: bool) -> usize {
    let ascii = (2 * ranges).saturating_sub(1) * if fold { 2 } else { 1 };
    ascii + if high { NON_ASCII + 1 } else { 0 }
}

/// RE2's Perl classes are ASCII: `\d` one range, `\s` three, `\w` four; negated they reach
/// beyond ASCII.
fn perl_ranges(p: &ast::ClassPerl) -> (usize, bool) {
    let ranges = match p.kind {
        ClassPerlKind::Digit => 1,
        ClassPerlKind::Space => 3,
        ClassPerlKind::Word => 4,
    };
    (ranges + usize::from(p.negated), p.negated)
}

fn set_ranges(set: &ClassSet) -> Result<(usize, bool), String> {
    match set {
        ClassSet::Item(item) => item_ranges(item),
        ClassSet::BinaryOp(op) => {
            let (a, ha) = set_ranges(&op.lhs)?;
            let (b, hb) = set_ranges(&op.rhs)?;
            Ok((a + b, ha || hb))
        }
    }
}

fn item_ranges(item: &ClassSetItem) -> Result<(usize, bool), String> {
    Ok(match item {
        ClassSetItem::Empty(_) => (0, false),
        ClassSetItem::Literal(l) => (1, !l.c.is_ascii()),
        ClassSetItem::Range(r) => (1, !r.end.c.is_ascii()),
        // The widest ASCII class, [:punct:], is four ranges.
        ClassSetItem::Ascii(a) => (4 + usize::from(a.negated), a.negated),
        ClassSetItem::Unicode(_) => return Err(unicode_class()),
        ClassSetItem::Perl(p) => perl_ranges(p),
        ClassSetItem::Bracketed(b) => {
            let (n, high) = set_ranges(&b.kind)?;
            (n + usize::from(b.negated), high || b.negated)
        }
        ClassSetItem::Union(u) => u.items.iter().try_fold((0, false), |(n, h), i| {
            let (m, hi) = item_ranges(i)?;
            Ok::<_, String>((n + m, h || hi))
        })?,
    })
}

/// Compiled regexes with their estimated program size, by pattern.
pub(crate) type ByPattern = HashMap<Box<str>, (Regex, usize)>;

/// The compiled regexes of one spec (or route), by pattern, with their estimated program size.
/// Cloning shares them.
///
/// Those of a spec also mark it as validated: [`crate::plan()`] does not validate such a spec again
/// (a decision costs no more than building its route), so a spec must not be changed after
/// validation without validating it again.
#[derive(Clone, Default)]
pub struct Regexes {
    /// `None` when there are none: most specs have no regex, and a controller keeps one spec per
    /// routemap, so they pay for no allocation.
    by_pattern: Option<Arc<ByPattern>>,
    validated: bool,
}

impl Regexes {
    /// Regexes from compiled entries.
    pub(crate) fn from_map(map: ByPattern) -> Self {
        Regexes {
            by_pattern: (!map.is_empty()).then(|| Arc::new(map)),
            validated: false,
        }
    }

    /// The same regexes, marking the spec that holds them as validated.
    pub(crate) fn validated(mut self) -> Self {
        self.validated = true;
        self
    }

    /// Whether these are the regexes of a validated spec.
    pub fn is_validated(&self) -> bool {
        self.validated
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = (&Box<str>, &(Regex, usize))> {
        self.by_pattern.iter().flat_map(|m| m.iter())
    }

    /// Compiles every regex a route's matches use; a pattern that does not compile, or is over
    /// the limits above, is left out (it then matches nothing: a gateway would refuse it).
    pub fn for_route(route: &crate::HttpRoute) -> Self {
        use crate::spec::{PathMatchType, ValueMatchType};
        let mut map = HashMap::new();
        let matches = route.spec.rules.iter().flat_map(|r| &r.matches);
        for m in matches {
            let path = (m.path.kind == PathMatchType::RegularExpression).then_some(&m.path.value);
            let values = m
                .headers
                .iter()
                .chain(&m.query_params)
                .filter(|v| v.kind == ValueMatchType::RegularExpression)
                .map(|v| &v.value);
            for p in path.into_iter().chain(values) {
                if !map.contains_key(p.as_str())
                    && let Ok(compiled) = compile(p)
                {
                    map.insert(p.as_str().into(), compiled);
                }
            }
        }
        Regexes::from_map(map)
    }

    /// The compiled regex and estimated program size of a pattern.
    pub fn get(&self, pattern: &str) -> Option<&(Regex, usize)> {
        self.by_pattern.as_ref()?.get(pattern)
    }

    /// Whether `text` as a whole matches `pattern`; false for a pattern not held.
    pub fn full_match(&self, pattern: &str, text: &str) -> bool {
        self.get(pattern).is_some_and(|(r, _)| r.is_match(text))
    }

    /// Number of distinct patterns held.
    pub fn len(&self) -> usize {
        self.by_pattern.as_ref().map_or(0, |m| m.len())
    }

    /// No pattern held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Regexes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Regexes({} compiled)", self.len())
    }
}

/// Derived from the spec that holds them, so never a difference of their own.
impl PartialEq for Regexes {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Regexes {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_stay_at_or_above_re2_figures() {
        // RE2's own figure for `/asdf/.*` is 24 (Envoy's tests, 2019); each `.*` adds about 15.
        let s = program_size("/asdf/.*").expect("accepted");
        assert!((24..=30).contains(&s), "{s}");
        let one = program_size(".*").expect("accepted");
        let two = program_size(".*.*").expect("accepted");
        assert!(two - one >= 15, "{one} {two}");
    }

    /// The figures docs/routemap.md quotes.
    #[test]
    fn documented_estimates() {
        for (p, want) in [
            ("/asdf/.*", 28),
            ("/api/v[0-9]+/.*", 31),
            ("test|canary", 16),
            ("(?i)firefox.*", 32),
            (
                "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                105,
            ),
        ] {
            let got = OVERHEAD
                + size_of(
                    &ast::parse::Parser::new().parse(p).expect("parses"),
                    p.starts_with("(?i)"),
                )
                .expect("sized");
            assert_eq!(got, want, "{p}");
        }
    }

    #[test]
    fn common_patterns_fit() {
        for p in [
            "/api/v[0-9]+/.*",
            "test|canary",
            "(?i)firefox.*",
            r"\d{1,4}",
            "[a-z0-9-]+",
            "/users/[^/]+/orders",
        ] {
            let s = program_size(p).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert!(s <= MAX_PROGRAM_SIZE, "{p}: {s}");
            compile(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        }
    }

    #[test]
    fn large_programs_are_refused() {
        for p in [
            "[a-z]{100}",
            "(.*){8}",
            "a{1001}",
            &"x".repeat(MAX_REGEX_LEN + 1),
            "(((((((((((((((((((((((((((((((((((a)))))))))))))))))))))))))))))))))))",
            r"\pL+",
        ] {
            assert!(program_size(p).is_err(), "{p}");
            assert!(compile(p).is_err(), "{p}");
        }
    }

    #[test]
    fn compiled_regexes_match_whole_values() {
        let (r, _) = compile("a|b").expect("valid");
        assert!(r.is_match("a") && r.is_match("b"));
        assert!(!r.is_match("ab") && !r.is_match("xa"));
    }
}
