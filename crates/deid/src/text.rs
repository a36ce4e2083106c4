//! Text in the record: free text to drop, patient ids to replace, warnings to redact.
//!
//! Free text is what a person wrote: string values, concept texts, displays of codings that
//! have no code system, reference displays and reference-range texts. A display that comes
//! with a code system (LOINC's "Heart rate") is the code system's name for the code, not
//! something written about the patient, and is kept.
//!
//! Warnings are written by medgate's parsers, but some quote what they could not read
//! (`valueDateTime "2024-02-30" is not a date`) and JSON Pointers name object keys, which an
//! upstream may make of ids or dates. A de-identifying profile therefore redacts them: every
//! quoted text becomes `"…"`, every run of digits and date punctuation holding four or more
//! digits becomes `…`, and positions other than `line N, column M` get the same treatment.

use medgate_core::{CodeableConcept, Observation, Reference, ReferenceRange, Value, Warning};

/// The `dataAbsentReason` of a value removed by a profile.
pub fn masked() -> CodeableConcept {
    CodeableConcept::data_absent("masked", "Masked")
}

/// Removes the free text of `o` (see the module docs).
pub fn drop_free_text(o: &mut Observation) {
    let Observation {
        category,
        code,
        value,
        data_absent_reason,
        interpretation,
        reference_range,
        components,
        has_member,
        derived_from,
        device,
        ..
    } = o;
    concepts(category);
    concept(code);
    mask_value(value, data_absent_reason);
    optional_concept(data_absent_reason);
    concepts(interpretation);
    ranges(reference_range);
    for c in components {
        concept(&mut c.code);
        mask_value(&mut c.value, &mut c.data_absent_reason);
        optional_concept(&mut c.data_absent_reason);
        concepts(&mut c.interpretation);
        ranges(&mut c.reference_range);
    }
    references(has_member);
    references(derived_from);
    if let Some(r) = device {
        r.display = None;
    }
    if device.as_ref().is_some_and(|r| r.reference.is_none()) {
        *device = None;
    }
}

/// A string value, or a coded value left with nothing after its text went, becomes no value
/// with `dataAbsentReason = masked`.
fn mask_value(value: &mut Value, reason: &mut Option<CodeableConcept>) {
    let gone = match value {
        Value::String(_) => true,
        Value::CodeableConcept(c) => {
            concept(c);
            c.is_empty()
        }
        _ => false,
    };
    if gone {
        *value = Value::None;
        *reason = Some(masked());
    }
}

fn concept(c: &mut CodeableConcept) {
    c.text = None;
    for coding in &mut c.coding {
        if coding.system.is_none() {
            coding.display = None;
        }
    }
    c.coding.retain(|coding| !coding.is_empty());
}

fn optional_concept(c: &mut Option<CodeableConcept>) {
    if let Some(inner) = c {
        concept(inner);
    }
    if c.as_ref().is_some_and(CodeableConcept::is_empty) {
        *c = None;
    }
}

fn concepts(list: &mut Vec<CodeableConcept>) {
    list.iter_mut().for_each(concept);
    list.retain(|c| !c.is_empty());
}

fn ranges(list: &mut Vec<ReferenceRange>) {
    for r in list.iter_mut() {
        r.text = None;
        optional_concept(&mut r.kind);
    }
    list.retain(|r| !r.is_empty());
}

fn references(list: &mut Vec<Reference>) {
    for r in list.iter_mut() {
        r.display = None;
    }
    list.retain(|r| r.reference.is_some());
}

/// Calls `f` on every text of `o` except its id and its references' targets (which a profile
/// replaces whole): codes, systems, displays, texts, units, string and time values,
/// reference displays, range texts, warnings.
pub fn for_each_text(o: &mut Observation, f: &mut impl FnMut(&mut String)) {
    let Observation {
        category,
        code,
        value,
        data_absent_reason,
        interpretation,
        reference_range,
        components,
        has_member,
        derived_from,
        device,
        warnings,
        ..
    } = o;
    category.iter_mut().for_each(|c| concept_texts(c, f));
    concept_texts(code, f);
    value_texts(value, f);
    data_absent_reason
        .iter_mut()
        .for_each(|c| concept_texts(c, f));
    interpretation.iter_mut().for_each(|c| concept_texts(c, f));
    reference_range.iter_mut().for_each(|r| range_texts(r, f));
    for c in components {
        concept_texts(&mut c.code, f);
        value_texts(&mut c.value, f);
        c.data_absent_reason
            .iter_mut()
            .for_each(|c| concept_texts(c, f));
        c.interpretation
            .iter_mut()
            .for_each(|c| concept_texts(c, f));
        c.reference_range.iter_mut().for_each(|r| range_texts(r, f));
    }
    let refs = has_member
        .iter_mut()
        .chain(derived_from.iter_mut())
        .chain(device.iter_mut());
    for r in refs {
        r.display.iter_mut().for_each(&mut *f);
    }
    for w in warnings {
        f(&mut w.at);
        f(&mut w.message);
    }
}

fn concept_texts(c: &mut CodeableConcept, f: &mut impl FnMut(&mut String)) {
    for coding in &mut c.coding {
        coding.system.iter_mut().for_each(&mut *f);
        coding.code.iter_mut().for_each(&mut *f);
        coding.display.iter_mut().for_each(&mut *f);
    }
    c.text.iter_mut().for_each(f);
}

fn quantity_texts(q: &mut medgate_core::Quantity, f: &mut impl FnMut(&mut String)) {
    q.unit.iter_mut().for_each(&mut *f);
    q.system.iter_mut().for_each(&mut *f);
    q.code.iter_mut().for_each(f);
}

fn value_texts(v: &mut Value, f: &mut impl FnMut(&mut String)) {
    match v {
        Value::String(s) | Value::Time(s) => f(s),
        Value::CodeableConcept(c) => concept_texts(c, f),
        Value::Quantity(q) => quantity_texts(q, f),
        Value::Range(r) => {
            r.low.iter_mut().for_each(|q| quantity_texts(q, f));
            r.high.iter_mut().for_each(|q| quantity_texts(q, f));
        }
        Value::Ratio(r) => {
            r.numerator.iter_mut().for_each(|q| quantity_texts(q, f));
            r.denominator.iter_mut().for_each(|q| quantity_texts(q, f));
        }
        Value::None
        | Value::Boolean(_)
        | Value::Integer(_)
        | Value::Period(_)
        | Value::DateTime(_) => {}
    }
}

fn range_texts(r: &mut ReferenceRange, f: &mut impl FnMut(&mut String)) {
    r.low.iter_mut().for_each(|q| quantity_texts(q, f));
    r.high.iter_mut().for_each(|q| quantity_texts(q, f));
    r.kind.iter_mut().for_each(|c| concept_texts(c, f));
    r.text.iter_mut().for_each(f);
}

/// Replaces every occurrence of `id` in `text`, ignoring ASCII case, by `with`. Substrings
/// count too (`P000001-obs-1`, `MRNP000001`): a leak costs more than an odd-looking note.
pub fn replace_id(text: &mut String, id: &str, with: &str) {
    let needle = id.as_bytes();
    if needle.is_empty() || text.len() < needle.len() {
        return;
    }
    let hay = text.as_bytes();
    let first = needle[0];
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        if hay[i].eq_ignore_ascii_case(&first)
            && hay[i..i + needle.len()].eq_ignore_ascii_case(needle)
        {
            // `needle` is valid UTF-8 and only ASCII letters are folded, so a match starts
            // and ends on character boundaries.
            let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
            o.push_str(text.get(copied..i).unwrap_or_default());
            o.push_str(with);
            i += needle.len();
            copied = i;
        } else {
            i += 1;
        }
    }
    if let Some(mut o) = out {
        o.push_str(text.get(copied..).unwrap_or_default());
        *text = o;
    }
}

/// A warning with quoted text and date- or id-like numbers removed (see the module docs).
pub fn redact_warning(w: &mut Warning) {
    if !is_line_column(&w.at) {
        w.at = redact(&w.at);
    }
    w.message = redact(&w.message);
}

fn is_line_column(at: &str) -> bool {
    let Some(rest) = at.strip_prefix("line ") else {
        return false;
    };
    let Some((line, column)) = rest.split_once(", column ") else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(line) && digits(column)
}

/// `text` with `"…"` for every quoted part and `…` for every run of digits and date
/// punctuation (`-:.+/TZ`) that holds four or more digits (from its first digit to its last).
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('"') {
        redact_numbers(&rest[..open], &mut out);
        out.push_str("\"…\"");
        match rest[open + 1..].find('"') {
            Some(close) => rest = &rest[open + 1 + close + 1..],
            None => {
                rest = "";
            }
        }
    }
    redact_numbers(rest, &mut out);
    out
}

fn redact_numbers(text: &str, out: &mut String) {
    let is_part =
        |c: char| c.is_ascii_digit() || matches!(c, '-' | ':' | '.' | '+' | '/' | 'T' | 'Z');
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if !is_part(c) {
            continue;
        }
        let mut end = i + c.len_utf8();
        while let Some(&(j, d)) = chars.peek() {
            if !is_part(d) {
                break;
            }
            end = j + d.len_utf8();
            chars.next();
        }
        let run = &text[i..end];
        if run.bytes().filter(u8::is_ascii_digit).count() >= 4 {
            // Punctuation around the digits (`/` of a pointer, a trailing `Z`) stays.
            let first = run.find(|c: char| c.is_ascii_digit()).unwrap_or(0);
            let last = run
                .rfind(|c: char| c.is_ascii_digit())
                .map_or(run.len(), |l| l + 1);
            out.push_str(&text[start..i + first]);
            out.push('…');
            start = i + last;
        }
    }
    out.push_str(&text[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_replaced_wherever_they_occur() {
        let check = |text: &str, want: &str| {
            let mut s = text.to_owned();
            replace_id(&mut s, "P000001", "psn-x");
            assert_eq!(s, want, "{text}");
        };
        check("P000001-obs-00001", "psn-x-obs-00001");
        check(
            "note on p000001 and MRNP000001.",
            "note on psn-x and MRNpsn-x.",
        );
        check("P00000", "P00000");
        check("äöü P000001 ß", "äöü psn-x ß");
        check("", "");
    }

    #[test]
    fn warnings_lose_quoted_text_and_dates_but_keep_their_shape() {
        let check = |at: &str, message: &str, want_at: &str, want_message: &str| {
            let mut w = Warning::new(at, message);
            redact_warning(&mut w);
            assert_eq!((w.at.as_str(), w.message.as_str()), (want_at, want_message));
        };
        check(
            "line 1234, column 5",
            "valueDateTime \"2024-02-30T10:00\" is not a date",
            "line 1234, column 5",
            "valueDateTime \"…\" is not a date",
        );
        check(
            "/days/2024-03-01/steps/0",
            "value 20240301 is not a 32-bit integer",
            "/days/…/steps/0",
            "value … is not a 32-bit integer",
        );
        check(
            "/patients/P000001/hr",
            "unterminated \"John Smith",
            "/patients/P…/hr",
            "unterminated \"…\"",
        );
        check(
            "",
            "expected a number, found string",
            "",
            "expected a number, found string",
        );
    }
}
