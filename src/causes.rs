//! An error as one line with its chain of causes, for logs and the CLI's last word.

use std::error::Error;

/// `error` and each of its sources, joined with ": ", skipping a source whose text the
/// message so far already ends with (many errors display their source themselves: a
/// redis-rs I/O error, a `thiserror` variant with `{0}` and `#[from]`).
pub fn with_causes(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot read conf: {0}")]
        Shows(#[source] std::io::Error),
        #[error("cannot read conf")]
        Hides(#[source] std::io::Error),
    }

    #[test]
    fn a_cause_is_written_once_whether_or_not_the_error_shows_it() {
        let shows = Outer::Shows(std::io::Error::other("permission denied"));
        assert_eq!(with_causes(&shows), "cannot read conf: permission denied");
        let hides = Outer::Hides(std::io::Error::other("permission denied"));
        assert_eq!(with_causes(&hides), "cannot read conf: permission denied");
    }
}
