//! Shards: `K/N`, the part of the targets one worker owns.

use std::fmt;
use std::str::FromStr;

/// One shard of N: `K/N`, `0 <= K < N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// The whole fleet in one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn new(index: u64, count: u64) -> Result<Self, String> {
        if count == 0 {
            return Err("shard count must be at least 1".into());
        }
        if index >= count {
            return Err(format!(
                "shard {index}/{count} is out of range: K must be in 0..{count}"
            ));
        }
        Ok(Self { index, count })
    }

    /// How the shard is written in object keys: `KofN`.
    pub fn key_token(&self) -> String {
        format!("{}of{}", self.index, self.count)
    }

    /// Parses [`Shard::key_token`].
    pub fn from_key_token(s: &str) -> Option<Self> {
        let (k, n) = s.split_once("of")?;
        Shard::new(k.parse().ok()?, n.parse().ok()?).ok()
    }
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("shard {s:?} must be written K/N, e.g. 0/4"))?;
        let k: u64 = k
            .trim()
            .parse()
            .map_err(|_| format!("shard {s:?}: K is not a number"))?;
        let n: u64 = n
            .trim()
            .parse()
            .map_err(|_| format!("shard {s:?}: N is not a number"))?;
        Shard::new(k, n)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax() {
        assert_eq!(
            "2/4".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 4 }
        );
        assert!("4/4".parse::<Shard>().is_err());
        assert!("1/0".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
        let s = Shard::new(3, 8).unwrap();
        assert_eq!(Shard::from_key_token(&s.key_token()), Some(s));
    }
}
