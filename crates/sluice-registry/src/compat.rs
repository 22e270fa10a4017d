//! Compatibility levels over the formats' one-way rule ("can the reader read the writer?").
//!
//! BACKWARD: the new schema reads data written with the old; FORWARD: the old reads the new;
//! FULL: both. Non-transitive levels check the latest live version, transitive ones every live
//! version. The formats decide what each pair means.

use crate::format::ParsedSchema;
use crate::model::CompatibilityLevel;

/// Checks `new` against the subject's live versions (`previous`, oldest first, with their
/// version numbers). Empty means compatible; otherwise each message names an
/// incompatibility and the version it is with.
pub fn check(
    level: CompatibilityLevel,
    new: &ParsedSchema,
    previous: &[(i32, &ParsedSchema)],
) -> Vec<String> {
    if level == CompatibilityLevel::None || previous.is_empty() {
        return Vec::new();
    }
    let against: &[(i32, &ParsedSchema)] = if level.transitive() {
        previous
    } else {
        &previous[previous.len() - 1..]
    };
    let mut out = Vec::new();
    // Newest first, as Confluent reports.
    for (version, old) in against.iter().rev() {
        if level.backward() {
            for m in new.can_read(old) {
                out.push(format!(
                    "{m} (new schema cannot read data written with version {version})"
                ));
            }
        }
        if level.forward() {
            for m in old.can_read(new) {
                out.push(format!(
                    "{m} (version {version} cannot read data written with the new schema)"
                ));
            }
        }
    }
    if !out.is_empty() {
        out.push(format!("{{compatibility: '{}'}}", level.as_str()));
    }
    out
}
