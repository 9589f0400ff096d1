//! Workspace tiers: how much of the host a workspace may use.

use serde::{Deserialize, Serialize};

/// The isolation tier of a workspace, 1 (sandboxed) to 4 (full access). Serialised as its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub enum Tier {
    /// Read-only root file system, no workspace mount.
    Sandboxed = 1,
    /// Memory and CPU limits.
    Standard = 2,
    /// Privileged, host PID namespace.
    Privileged = 3,
    /// Privileged, host network and the Docker socket.
    FullAccess = 4,
}

/// A number that is not a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("tier must be between 1 and 4")]
pub struct InvalidTier(pub i64);

impl Tier {
    /// The tier a workspace gets when its creator names none (or names 0).
    pub const DEFAULT: Tier = Tier::Privileged;

    /// The tier as stored and sent: 1 to 4.
    pub const fn number(self) -> i32 {
        self as i32
    }

    /// The tier asked for in a request, where 0 means "the default".
    pub fn from_request(n: i64) -> Result<Tier, InvalidTier> {
        if n == 0 {
            Ok(Tier::DEFAULT)
        } else {
            Tier::try_from(n)
        }
    }
}

impl TryFrom<i64> for Tier {
    type Error = InvalidTier;

    fn try_from(n: i64) -> Result<Self, Self::Error> {
        match n {
            1 => Ok(Tier::Sandboxed),
            2 => Ok(Tier::Standard),
            3 => Ok(Tier::Privileged),
            4 => Ok(Tier::FullAccess),
            other => Err(InvalidTier(other)),
        }
    }
}

impl From<Tier> for i64 {
    fn from(t: Tier) -> i64 {
        i64::from(t.number())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_zero_means_default() {
        for n in 1..=4 {
            let t = Tier::try_from(n).unwrap();
            assert_eq!(i64::from(t), n);
            assert_eq!(serde_json::to_string(&t).unwrap(), n.to_string());
        }
        assert_eq!(Tier::from_request(0), Ok(Tier::DEFAULT));
        assert_eq!(Tier::from_request(5), Err(InvalidTier(5)));
        assert_eq!(Tier::from_request(-1), Err(InvalidTier(-1)));
        assert!(serde_json::from_str::<Tier>("0").is_err());
        assert!(serde_json::from_str::<Tier>("\"2\"").is_err());
    }
}
