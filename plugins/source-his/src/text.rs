//! Small text helpers shared by the three formats: lenient numbers and short, safe quotes
//! of upstream text in warnings.

use medgate_core::Decimal;

/// Longest piece of upstream text quoted in a warning.
const QUOTE_MAX: usize = 32;

/// A number in any `xs:decimal`/`xs:double` lexical form (`00`, `+5`, `.5`, `5.`, `1E3`),
/// canonicalized with its written digits kept.
pub(crate) fn decimal(text: &str) -> Option<Decimal> {
    Decimal::parse_lenient(text)
}

/// `text` in double quotes, cut to a few dozen bytes on a character boundary (warnings
/// stay short and never carry a whole narrative).
pub(crate) fn quoted(text: &str) -> String {
    let text = text.trim();
    if text.len() <= QUOTE_MAX {
        return format!("\"{text}\"");
    }
    let mut end = QUOTE_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("\"{}…\"", &text[..end])
}

/// The warning message for a number that could not be read.
pub(crate) fn unreadable_number(element: &str, text: &str) -> String {
    format!("{element} {} is not a number", quoted(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short_and_cut_on_char_boundaries() {
        assert_eq!(quoted(" 1,5 "), "\"1,5\"");
        let long = "é".repeat(40);
        let q = quoted(&long);
        assert!(q.len() <= QUOTE_MAX + 6, "{q}");
        assert!(q.ends_with("…\""));
    }
}
