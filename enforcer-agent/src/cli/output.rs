//! `-o FORMAT`: one output flag, spelled and checked the same way by every command, as
//! kubectl has it: `table` (the default, for people; `text` is accepted for it),
//! `wide` (a table with more columns), `json` and `yaml`. A command that cannot write
//! a format says so and exits with an error, instead of ignoring the flag.

use clap::{Args, ValueEnum};
use serde::Serialize;

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people (the default).
    #[value(alias = "text")]
    Table,
    /// A table with more columns.
    Wide,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

impl Output {
    pub fn name(self) -> &'static str {
        match self {
            Self::Table => "table",
            Self::Wide => "wide",
            Self::Json => "json",
            Self::Yaml => "yaml",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("`enforcer {command}` cannot write -o {format}; it writes {supported}")]
    Unsupported {
        command: &'static str,
        format: &'static str,
        supported: String,
    },
    #[error("cannot encode the output as {format}: {message}")]
    Encode {
        format: &'static str,
        message: String,
    },
}

/// The `-o` flag, flattened into each command's arguments.
#[derive(Args, Clone, Copy, Debug)]
pub struct OutputArg {
    /// Output format: table, wide, json or yaml (what this command writes is listed
    /// above; others are refused).
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        default_value = "table",
        value_name = "FORMAT",
        global = true
    )]
    pub output: Output,
}

impl OutputArg {
    /// The format asked for, if `command` writes it.
    pub fn check(self, command: &'static str, supported: &[Output]) -> Result<Output, OutputError> {
        if supported.contains(&self.output) {
            return Ok(self.output);
        }
        Err(OutputError::Unsupported {
            command,
            format: self.output.name(),
            supported: supported
                .iter()
                .map(|o| o.name())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// `value` as pretty JSON, with a final newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<String, OutputError> {
    serde_json::to_string_pretty(value)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| OutputError::Encode {
            format: "json",
            message: e.to_string(),
        })
}

/// `value` as a YAML document.
pub fn yaml<T: Serialize>(value: &T) -> Result<String, OutputError> {
    serde_saphyr::to_string(value)
        .map(|s| if s.ends_with('\n') { s } else { s + "\n" })
        .map_err(|e| OutputError::Encode {
            format: "yaml",
            message: e.to_string(),
        })
}

/// `value` as JSON or YAML (`format` is one of them).
pub fn structured<T: Serialize>(format: Output, value: &T) -> Result<String, OutputError> {
    if format == Output::Yaml {
        yaml(value)
    } else {
        json(value)
    }
}
