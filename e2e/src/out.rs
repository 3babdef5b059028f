//! What the tests and the bench print: tutorial-like steps with indented details, so a run reads
//! like the seed tutorial, and the bench's progress lines.

use std::fmt::Display;
use std::io::Write;

/// One tutorial-like line: `==> step 2: ...`.
pub fn step(n: impl Display, text: impl Display) {
    println!("==> step {n}: {text}");
}

/// A detail line under a step.
pub fn note(text: impl Display) {
    println!("    {text}");
}

/// A passed check.
pub fn ok(text: impl Display) {
    println!("    ok: {text}");
}

/// A progress line of the scale bench, flushed at once (its phases run for minutes).
pub fn say(text: impl Display) {
    println!("[scale] {text}");
    let _ = std::io::stdout().flush();
}
