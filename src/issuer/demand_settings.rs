//! The certificate knobs a listener's annotations set (duration,
//! renew-before, key algorithm and size, rotation), for [`super::demand`]:
//! read from layers of annotations so a ListenerSet's own win over its
//! parent Gateway's, knob by knob. Pure.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{
    DURATION_ANNOTATIONS, KEY_ALGORITHM_ANNOTATIONS, KEY_ROTATION_ANNOTATIONS,
    KEY_SIZE_ANNOTATIONS, RENEW_BEFORE_ANNOTATIONS, RENEW_BEFORE_PERCENTAGE_ANNOTATIONS,
};
use crate::issuer::request::KeyAlgorithm;

/// Per-listener settings read from annotations (the Gateway's, or the
/// ListenerSet's over its parent's), with the problems found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Settings {
    pub(super) duration: Option<Duration>,
    pub(super) renew_before: Option<Duration>,
    pub(super) renew_before_percentage: Option<u32>,
    pub(super) key: KeyAlgorithm,
    pub(super) rotate_key: bool,
    pub(super) problems: Vec<String>,
}

/// The knobs of a listener whose annotations are `layers`, the first layer
/// with any of a knob's annotations winning for that knob.
pub(super) fn settings(layers: &[&BTreeMap<String, String>]) -> Settings {
    let get = |keys: &[&'static str]| layers.iter().find_map(|ann| annotation(ann, keys));
    let mut s = Settings {
        rotate_key: true,
        ..Settings::default()
    };
    let mut bad = |key: &str, value: &str, why: &str| {
        s.problems.push(format!(
            "annotation {key}: {value:?} {why}; using the default"
        ))
    };
    let duration = |keys: &[&'static str], bad: &mut dyn FnMut(&str, &str, &str)| {
        get(keys).and_then(|(k, v)| {
            let d = parse_duration(v).filter(|d| !d.is_zero());
            if d.is_none() {
                bad(k, v, "is not a duration such as 2160h, 90d or 10m");
            }
            d
        })
    };
    let d = duration(&DURATION_ANNOTATIONS, &mut bad);
    let rb = duration(&RENEW_BEFORE_ANNOTATIONS, &mut bad);
    let pct = get(&RENEW_BEFORE_PERCENTAGE_ANNOTATIONS).and_then(|(k, v)| {
        let p = v.parse::<u32>().ok().filter(|p| (1..=99).contains(p));
        if p.is_none() {
            bad(k, v, "is not a percentage from 1 to 99");
        }
        p
    });
    let size = get(&KEY_SIZE_ANNOTATIONS).and_then(|(k, v)| {
        let n = v.parse::<u32>().ok();
        if n.is_none() {
            bad(k, v, "is not a number");
        }
        n
    });
    let key = match get(&KEY_ALGORITHM_ANNOTATIONS) {
        Some((k, v)) => KeyAlgorithm::parse(v, size).unwrap_or_else(|| {
            bad(k, v, "is not a supported key algorithm");
            KeyAlgorithm::default()
        }),
        None => match size {
            Some(384) => KeyAlgorithm::EcdsaP384,
            _ => KeyAlgorithm::default(),
        },
    };
    let rotate = match get(&KEY_ROTATION_ANNOTATIONS) {
        None => true,
        Some((_, v)) if v.eq_ignore_ascii_case("always") => true,
        Some((_, v)) if v.eq_ignore_ascii_case("never") => false,
        Some((k, v)) => {
            bad(k, v, "is neither Always nor Never");
            true
        }
    };
    s.duration = d;
    s.renew_before = rb;
    s.renew_before_percentage = pct;
    s.key = key;
    s.rotate_key = rotate;
    s
}

/// The first of `keys` present in `ann`, with its trimmed value.
fn annotation<'a>(
    ann: &'a BTreeMap<String, String>,
    keys: &[&'static str],
) -> Option<(&'static str, &'a str)> {
    keys.iter()
        .find_map(|k| ann.get(*k).map(|v| (*k, v.trim())))
}

/// Parses a Go-style duration (`2160h`, `1h30m`, `90s`, `500ms`) or whole
/// days (`90d`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (number, tail) = rest.split_at(digits);
        let value: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return None,
        };
        total = total.checked_add(Duration::try_from_secs_f64(value * seconds).ok()?)?;
        rest = tail;
    }
    Some(total)
}
