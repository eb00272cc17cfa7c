//! `os/architecture[/variant]`, as `--platform` gives it and as an image
//! index, `index.json` and `bundle.json` record it.

use std::fmt;

/// An `os/architecture[/variant]` platform.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    /// For example `linux`.
    pub os: String,
    /// For example `amd64`.
    pub architecture: String,
    /// For example `v8` for arm64.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Platform {
                    os: os.to_string(),
                    architecture: arch.to_string(),
                    variant: Some(variant.to_string()),
                })
            }
            _ => Err(format!(
                "`{s}` is not a platform: expected OS/ARCH[/VARIANT], e.g. linux/amd64"
            )),
        }
    }
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_variant() {
        assert_eq!(Platform::parse("linux/amd64").unwrap(), Platform::default());
        let arm = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(arm.variant.as_deref(), Some("v8"));
        assert_eq!(arm.to_string(), "linux/arm64/v8");
        assert!(Platform::parse("amd64").is_err());
        assert!(Platform::parse("linux/").is_err());
    }
}
