//! The Prometheus text exposition format (0.0.4), written straight into
//! one string: a family's `# HELP` and `# TYPE` lines come before its
//! first sample, and a family without samples is left out. Label values are
//! written through their `Display` and escaped on the way, so a scrape of
//! 100,000 backends allocates its text and nothing per sample.
use std::fmt::{self, Display, Write as _};

use super::{MetricInfo, MetricKind};

/// A sample's value: counts are written exactly (an `f64` would round
/// byte counters past 2^53), measurements as Prometheus reads floats.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    Count(u64),
    Real(f64),
}

impl From<u64> for Number {
    fn from(count: u64) -> Self {
        Self::Count(count)
    }
}

impl From<u32> for Number {
    fn from(count: u32) -> Self {
        Self::Count(count.into())
    }
}

impl From<bool> for Number {
    fn from(flag: bool) -> Self {
        Self::Count(flag.into())
    }
}

impl From<f64> for Number {
    fn from(value: f64) -> Self {
        Self::Real(value)
    }
}

impl Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Count(count) => write!(f, "{count}"),
            Self::Real(value) if value.is_nan() => f.write_str("NaN"),
            Self::Real(value) if value == f64::INFINITY => f.write_str("+Inf"),
            Self::Real(value) if value == f64::NEG_INFINITY => f.write_str("-Inf"),
            // Rust's shortest round-trip form, without an exponent.
            Self::Real(value) => write!(f, "{value}"),
        }
    }
}

/// A histogram's value: cumulative counts per upper bound (the `+Inf`
/// bucket is `count`), the count and the sum.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

/// The text of a scrape.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// An exposition with room for `bytes` of text.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
        }
    }

    /// The samples of family `info`, written by the returned writer.
    pub fn family(&mut self, info: &'static MetricInfo) -> Family<'_> {
        Family {
            text: &mut self.text,
            info,
            started: false,
        }
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

/// The writer of one family's samples.
pub struct Family<'a> {
    text: &'a mut String,
    info: &'static MetricInfo,
    started: bool,
}

impl Family<'_> {
    /// A counter's or gauge's sample; `values` are the values of the
    /// family's labels, in their order.
    pub fn sample(&mut self, values: &[&dyn Display], value: impl Into<Number>) {
        debug_assert_ne!(self.info.kind, MetricKind::Histogram, "{}", self.info.name);
        self.start();
        self.series("", values, None);
        self.value(value.into());
    }

    /// A histogram's samples: `_bucket` per bound and `+Inf`, `_sum` and
    /// `_count`.
    pub fn histogram(&mut self, values: &[&dyn Display], histogram: &Histogram) {
        debug_assert_eq!(self.info.kind, MetricKind::Histogram, "{}", self.info.name);
        self.start();
        for &(bound, count) in &histogram.buckets {
            self.series("_bucket", values, Some(Number::Real(bound)));
            self.value(Number::Count(count));
        }
        self.series("_bucket", values, Some(Number::Real(f64::INFINITY)));
        self.value(Number::Count(histogram.count));
        self.series("_sum", values, None);
        self.value(Number::Real(histogram.sum));
        self.series("_count", values, None);
        self.value(Number::Count(histogram.count));
    }

    /// The `# HELP` and `# TYPE` lines, before the first sample.
    fn start(&mut self) {
        if self.started {
            return;
        }
        self.started = true;
        let info = self.info;
        let _ = write!(self.text, "# HELP {} ", info.name);
        let _ = Escaped::help(self.text).write_str(info.help);
        let _ = writeln!(self.text, "\n# TYPE {} {}", info.name, info.kind.as_str());
    }

    /// `NAME[suffix]{label="value",...[,le="bound"]}`.
    fn series(&mut self, suffix: &str, values: &[&dyn Display], le: Option<Number>) {
        debug_assert_eq!(values.len(), self.info.labels.len(), "{}", self.info.name);
        let text = &mut *self.text;
        text.push_str(self.info.name);
        text.push_str(suffix);
        let labels = self.info.labels.iter().zip(values);
        let le = le.map(|bound| ("le", bound));
        if values.is_empty() && le.is_none() {
            return;
        }
        text.push('{');
        let mut first = true;
        for (name, value) in labels {
            label_start(text, name, &mut first);
            let _ = write!(Escaped::label(text), "{value}");
            text.push('"');
        }
        if let Some((name, bound)) = le {
            label_start(text, name, &mut first);
            let _ = write!(text, "{bound}\"");
        }
        text.push('}');
    }

    fn value(&mut self, value: Number) {
        let _ = writeln!(self.text, " {value}");
    }
}

/// `,name="` (no comma before the first label).
fn label_start(text: &mut String, name: &str, first: &mut bool) {
    if !*first {
        text.push(',');
    }
    *first = false;
    text.push_str(name);
    text.push_str("=\"");
}

/// Writes into a string with the escapes of the text format: `\\` and
/// `\n` in help texts, and `\"` too in label values.
struct Escaped<'a> {
    text: &'a mut String,
    quotes: bool,
}

impl<'a> Escaped<'a> {
    fn help(text: &'a mut String) -> Self {
        Self {
            text,
            quotes: false,
        }
    }

    fn label(text: &'a mut String) -> Self {
        Self { text, quotes: true }
    }
}

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '\\' => self.text.push_str("\\\\"),
                '\n' => self.text.push_str("\\n"),
                '"' if self.quotes => self.text.push_str("\\\""),
                c => self.text.push(c),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNTER: MetricInfo = MetricInfo::counter("lb_things_total", &["a", "b"], "Things.");
    const BARE: MetricInfo = MetricInfo::gauge("lb_bare", &[], "A \\ help\nwith a newline.");
    const TIMES: MetricInfo = MetricInfo::histogram("lb_seconds", &["vs"], "Times.");

    #[test]
    fn samples_follow_their_help_and_type_and_escape_label_values() {
        let mut exposition = Exposition::default();
        let mut family = exposition.family(&COUNTER);
        family.sample(&[&"x\"y\\z\nw", &7], u64::MAX);
        family.sample(
            &[&"plain", &"10.0.0.1".parse::<std::net::IpAddr>().unwrap()],
            0u64,
        );
        exposition.family(&BARE).sample(&[], f64::NAN);
        // A family without samples is left out.
        exposition.family(&TIMES);
        assert_eq!(
            exposition.into_text(),
            "# HELP lb_things_total Things.\n\
             # TYPE lb_things_total counter\n\
             lb_things_total{a=\"x\\\"y\\\\z\\nw\",b=\"7\"} 18446744073709551615\n\
             lb_things_total{a=\"plain\",b=\"10.0.0.1\"} 0\n\
             # HELP lb_bare A \\\\ help\\nwith a newline.\n\
             # TYPE lb_bare gauge\n\
             lb_bare NaN\n"
        );
    }

    #[test]
    fn a_histogram_is_its_buckets_sum_and_count() {
        let mut exposition = Exposition::default();
        let histogram = Histogram {
            buckets: vec![(0.0005, 1), (1.0, 3)],
            count: 4,
            sum: 7.25,
        };
        exposition.family(&TIMES).histogram(&[&"web"], &histogram);
        assert_eq!(
            exposition.into_text(),
            "# HELP lb_seconds Times.\n\
             # TYPE lb_seconds histogram\n\
             lb_seconds_bucket{vs=\"web\",le=\"0.0005\"} 1\n\
             lb_seconds_bucket{vs=\"web\",le=\"1\"} 3\n\
             lb_seconds_bucket{vs=\"web\",le=\"+Inf\"} 4\n\
             lb_seconds_sum{vs=\"web\"} 7.25\n\
             lb_seconds_count{vs=\"web\"} 4\n"
        );
    }
}
