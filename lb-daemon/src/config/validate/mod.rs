//! From [`RawConfig`] to [`Config`]: defaults, ranges, and the rules that
//! tie fields together. Every rule reports into one [`Ctx`] and carries
//! on, so one run reports every error of the file.
//!
//! - [`dataplane`]: `[dataplane]`, `[metrics]`, `[admin]`.
//! - [`vrrp`]: each `[[vrrp.instance]]` on its own.
//! - [`virtual_server`]: each `[[virtual_server]]` with its health check
//!   and backends.
//! - [`cross`]: rules across entries (duplicates, references, capacity).
//!
//! A validator that meets an invalid value records the error and goes on
//! with the default, so later rules still run; the result is only used
//! when no error was recorded.
mod cross;
mod dataplane;
mod virtual_server;
mod vrrp;

use std::{fmt::Display, net::IpAddr, ops::Range, path::PathBuf, time::Duration};

use super::{
    error::{ConfigError, ConfigErrors, ConfigWarning, Lines, Position},
    model::{Admin, Config, Metrics, defaults},
    raw::{RawConfig, S},
};

/// A valid configuration and the warnings about it.
#[derive(Clone, Debug)]
pub struct Checked {
    pub config: Config,
    pub warnings: Vec<ConfigWarning>,
}

/// Validates `raw`, read from `text` in `file`.
pub(super) fn validate(raw: &RawConfig, file: &str, text: &str) -> Result<Checked, ConfigErrors> {
    let mut ctx = Ctx {
        file,
        lines: Lines::new(text),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let dataplane = raw
        .dataplane
        .as_ref()
        .map(|d| dataplane::dataplane(&mut ctx, d));
    let metrics = Metrics {
        listen: dataplane::listen(
            &mut ctx,
            raw.metrics.as_ref(),
            "metrics",
            defaults::METRICS_LISTEN,
        ),
    };
    let admin = Admin {
        listen: dataplane::listen(
            &mut ctx,
            raw.admin.as_ref(),
            "admin",
            defaults::ADMIN_LISTEN,
        ),
    };
    let raw_instances = raw
        .vrrp
        .as_ref()
        .map_or(&[][..], |v| &v.get_ref().instance[..]);
    let vrrp: Vec<_> = raw_instances
        .iter()
        .enumerate()
        .map(|(i, instance)| vrrp::instance(&mut ctx, i, instance))
        .collect();
    let maglev_table_size = dataplane
        .as_ref()
        .map_or(defaults::MAGLEV_TABLE_SIZE, |d| d.maglev_table_size);
    let virtual_servers: Vec<_> = raw
        .virtual_server
        .iter()
        .enumerate()
        .map(|(i, vs)| virtual_server::virtual_server(&mut ctx, i, vs, maglev_table_size))
        .collect();
    cross::check(
        &mut ctx,
        raw,
        dataplane.as_ref(),
        (&metrics, &admin),
        &vrrp,
        &virtual_servers,
    );

    let Ctx {
        errors, warnings, ..
    } = ctx;
    if let Some(errors) = ConfigErrors::new(errors) {
        return Err(errors);
    }
    // Without errors every entry validated; a `None` would be a bug here,
    // reported as an error rather than a panic.
    let complete = vrrp
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .zip(virtual_servers.into_iter().collect::<Option<Vec<_>>>());
    let Some((vrrp, virtual_servers)) = complete else {
        return Err(ConfigErrors::one(ConfigError::Invalid {
            file: file.to_owned(),
            position: Position { line: 1, column: 1 },
            field: "(config)".to_owned(),
            message: "internal error: an entry failed validation without an error".to_owned(),
        }));
    };
    Ok(Checked {
        config: Config {
            dataplane,
            metrics,
            admin,
            vrrp,
            virtual_servers,
        },
        warnings,
    })
}

/// Collects errors and warnings, and checks values field by field.
/// `field` arguments are full paths such as `virtual_server[0].port`.
pub(super) struct Ctx<'a> {
    file: &'a str,
    lines: Lines<'a>,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigWarning>,
}

impl Ctx<'_> {
    /// Records an error at `span`.
    fn error(&mut self, span: &Range<usize>, field: impl Display, message: impl Into<String>) {
        self.errors.push(ConfigError::Invalid {
            file: self.file.to_owned(),
            position: self.lines.position(span.start),
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// Records a warning at `span`.
    fn warn(&mut self, span: &Range<usize>, field: impl Display, message: impl Into<String>) {
        self.warnings.push(ConfigWarning {
            file: self.file.to_owned(),
            position: self.lines.position(span.start),
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// The line `span` starts on, for "also defined at line N".
    fn line(&self, span: &Range<usize>) -> usize {
        self.lines.position(span.start).line
    }

    /// `value`, or an error at `table` (the enclosing table) if absent.
    fn required<'v, T>(
        &mut self,
        value: &'v Option<S<T>>,
        table: &Range<usize>,
        field: impl Display,
    ) -> Option<&'v S<T>> {
        if value.is_none() {
            self.error(table, field, "missing required field");
        }
        value.as_ref()
    }

    /// An integer in `min..=max`.
    fn int<T>(&mut self, value: &S<i64>, min: T, max: T, field: impl Display) -> Option<T>
    where
        T: TryFrom<i64> + Into<i64> + Display + Copy,
    {
        let n = *value.get_ref();
        match T::try_from(n) {
            Ok(v) if n >= min.into() && n <= max.into() => Some(v),
            _ => {
                self.error(
                    &value.span(),
                    field,
                    format!("{n} is out of range {min}..={max}"),
                );
                None
            }
        }
    }

    /// An optional integer in `min..=max`, else `default`.
    fn int_or<T>(
        &mut self,
        value: &Option<S<i64>>,
        default: T,
        min: T,
        max: T,
        field: impl Display,
    ) -> T
    where
        T: TryFrom<i64> + Into<i64> + Display + Copy,
    {
        value
            .as_ref()
            .and_then(|v| self.int(v, min, max, field))
            .unwrap_or(default)
    }

    /// A humantime duration (`"1s"`, `"500ms"`, `"1m 30s"`).
    fn duration(&mut self, value: &S<String>, field: impl Display) -> Option<Duration> {
        match humantime::parse_duration(value.get_ref()) {
            Ok(duration) => Some(duration),
            Err(error) => {
                self.error(
                    &value.span(),
                    field,
                    format!(
                        "{:?} is not a duration ({error}); write e.g. \"2s\" or \"500ms\"",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// An optional duration, else `default`.
    fn duration_or(
        &mut self,
        value: &Option<S<String>>,
        default: Duration,
        field: impl Display,
    ) -> Duration {
        value
            .as_ref()
            .and_then(|v| self.duration(v, field))
            .unwrap_or(default)
    }

    /// One of `choices` by name, else `default` if absent.
    fn choice<T: Copy>(
        &mut self,
        value: &Option<S<String>>,
        default: T,
        choices: &[(&str, T)],
        field: impl Display,
    ) -> T {
        let Some(value) = value else {
            return default;
        };
        if let Some((_, v)) = choices.iter().find(|(name, _)| name == value.get_ref()) {
            return *v;
        }
        let names: Vec<String> = choices
            .iter()
            .map(|(name, _)| format!("{name:?}"))
            .collect();
        self.error(
            &value.span(),
            field,
            format!("{:?} is not one of {}", value.get_ref(), names.join(", ")),
        );
        default
    }

    /// An IP address.
    fn ip(&mut self, value: &S<String>, field: impl Display) -> Option<IpAddr> {
        match value.get_ref().parse() {
            Ok(address) => Some(address),
            Err(_) => {
                self.error(
                    &value.span(),
                    field,
                    format!("{:?} is not an IP address", value.get_ref()),
                );
                None
            }
        }
    }

    /// An address that can be a VIP, backend or peer: not unspecified,
    /// multicast, broadcast or loopback.
    fn unicast_ip(&mut self, value: &S<String>, field: impl Display) -> Option<IpAddr> {
        let address = self.ip(value, &field)?;
        let broadcast = matches!(address, IpAddr::V4(v4) if v4.is_broadcast());
        if address.is_unspecified() || address.is_multicast() || address.is_loopback() || broadcast
        {
            self.error(
                &value.span(),
                field,
                format!("{address} is not a unicast address (unspecified, multicast, broadcast or loopback)"),
            );
            return None;
        }
        Some(address)
    }

    /// The name of a virtual server or VRRP instance: 1 to 64 of
    /// `A-Z a-z 0-9 _ . -` (it appears in URLs, metric labels and the
    /// arguments of notify scripts).
    fn name(&mut self, value: &S<String>, field: impl Display) -> Option<String> {
        let name = value.get_ref();
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if name.is_empty() || name.len() > defaults::NAME_MAX || !name.chars().all(valid_char) {
            self.error(
                &value.span(),
                field,
                format!(
                    "{name:?} is not a valid name: use 1 to {} characters among A-Z a-z 0-9 _ . -",
                    defaults::NAME_MAX
                ),
            );
            return None;
        }
        Some(name.clone())
    }

    /// A network interface name (at most 15 bytes, no `/` or whitespace).
    fn interface(&mut self, value: &S<String>, field: impl Display) -> Option<String> {
        let name = value.get_ref();
        let valid = !name.is_empty()
            && name.len() < 16
            && name != "."
            && name != ".."
            && !name
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace());
        if !valid {
            self.error(
                &value.span(),
                field,
                format!(
                    "{name:?} is not a valid interface name (1 to 15 bytes, no '/', ':' or spaces)"
                ),
            );
            return None;
        }
        Some(name.clone())
    }

    /// An absolute path.
    fn absolute_path(&mut self, value: &S<String>, field: impl Display) -> Option<PathBuf> {
        let path = PathBuf::from(value.get_ref());
        if !path.is_absolute() {
            self.error(
                &value.span(),
                field,
                format!("{:?} is not an absolute path", value.get_ref()),
            );
            return None;
        }
        Some(path)
    }
}

/// The path of a field, `parent.name`, written out only when an error
/// or warning names it (a large file has hundreds of thousands of fields).
#[derive(Clone, Copy)]
pub(super) struct Field<P>(pub P, pub &'static str);

impl<P: Display> Display for Field<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// The path of an array element, `array[index]`, written out when needed.
#[derive(Clone, Copy)]
pub(super) struct Element<P>(pub P, pub usize);

impl<P: Display> Display for Element<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

#[cfg(test)]
mod tests;
