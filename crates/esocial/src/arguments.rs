//! A command's arguments: positional words, `--name value` options and
//! `--name` flags.

use std::collections::{HashMap, HashSet};

#[derive(Debug)]
pub struct Arguments {
    pub positional: Vec<String>,
    /// Every value given, in order: an option may be given more than once.
    options: HashMap<String, Vec<String>>,
    flags: HashSet<String>,
    usage: &'static str,
}

impl Arguments {
    /// Splits `arguments`; an option without a value is an error that shows
    /// `usage`.
    pub fn parse(arguments: &[String], usage: &'static str) -> anyhow::Result<Self> {
        Self::parse_with_flags(arguments, &[], usage)
    }

    /// As [`Arguments::parse`], where the names in `flags` take no value.
    pub fn parse_with_flags(arguments: &[String], flags: &[&str], usage: &'static str) -> anyhow::Result<Self> {
        let mut parsed = Self { positional: Vec::new(), options: HashMap::new(), flags: HashSet::new(), usage };
        let mut remaining = arguments.iter();
        while let Some(argument) = remaining.next() {
            match argument.strip_prefix("--") {
                Some(name) if flags.contains(&name) => {
                    parsed.flags.insert(name.to_owned());
                }
                Some(name) => {
                    let value = remaining.next().ok_or_else(|| anyhow::anyhow!("{argument} needs a value\n{usage}"))?;
                    parsed.options.entry(name.to_owned()).or_default().push(value.clone());
                }
                None => parsed.positional.push(argument.clone()),
            }
        }
        Ok(parsed)
    }

    /// Whether a flag was given.
    pub fn flag(&self, name: &str) -> bool {
        self.flags.contains(name)
    }

    /// The first positional word: the subcommand.
    pub fn command(&self) -> Option<&str> {
        self.positional.first().map(String::as_str)
    }

    /// The value of an option; the last, when given more than once.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.options.get(name).and_then(|values| values.last()).map(String::as_str)
    }

    /// Every value given for an option, in order (none when not given).
    pub fn all(&self, name: &str) -> &[String] {
        self.options.get(name).map_or(&[], Vec::as_slice)
    }

    pub fn required(&self, name: &str) -> anyhow::Result<&str> {
        self.get(name).ok_or_else(|| anyhow::anyhow!("--{name} is required\n{}", self.usage))
    }

    /// A whole number (`_` separators allowed), if given.
    pub fn number(&self, name: &str) -> anyhow::Result<Option<u64>> {
        self.get(name)
            .map(|text| {
                text.replace('_', "")
                    .parse::<u64>()
                    .map_err(|_| anyhow::anyhow!("--{name} must be a whole number, not {text:?}"))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn positional_words_and_options_are_told_apart() {
        let arguments =
            Arguments::parse(&words("import people.csv --format csv --persons 1_000"), "usage").expect("parse");
        assert_eq!(arguments.command(), Some("import"));
        assert_eq!(arguments.positional, ["import", "people.csv"]);
        assert_eq!(arguments.get("format"), Some("csv"));
        assert_eq!(arguments.number("persons").expect("number"), Some(1000));
        assert!(arguments.required("out").is_err());
        assert!(Arguments::parse(&words("verify-log --node"), "usage").is_err(), "an option needs a value");
    }

    #[test]
    fn flags_take_no_value() {
        let arguments =
            Arguments::parse_with_flags(&words("verify-log --no-witness --node gateway-2"), &["no-witness"], "u")
                .expect("parse");
        assert!(arguments.flag("no-witness"));
        assert_eq!(arguments.get("node"), Some("gateway-2"));
        assert_eq!(arguments.positional, ["verify-log"]);
        let arguments = Arguments::parse(&words("verify-log --node gateway-2"), "u").expect("parse");
        assert!(!arguments.flag("no-witness"));
    }

    #[test]
    fn an_option_given_twice_keeps_both_values_in_order() {
        let arguments =
            Arguments::parse(&words("verify-log --earlier-key a.pem --node gateway-1 --earlier-key b.pem"), "u")
                .expect("parse");
        assert_eq!(arguments.all("earlier-key"), ["a.pem", "b.pem"]);
        assert_eq!(arguments.get("earlier-key"), Some("b.pem"), "the last one");
        assert!(arguments.all("node-key").is_empty());
    }
}
