//! MQTT topic layout: `yl/v1/{site}/{device}/{up|ack|report|status}` and `yl/v1/fleet/{group}`.
//!
//! Site and device ids are short ASCII slugs so that no id can smuggle `/`, `+` or `#` into a
//! topic; everything else lives inside the signed payload.

use crate::error::TopicError;
use std::fmt;

/// The topic prefix of protocol version 1.
pub const PREFIX: &str = "yl/v1";
/// Filter matching every device's uplink.
pub const UP_FILTER: &str = "yl/v1/+/+/up";
/// Filter matching every device's status.
pub const STATUS_FILTER: &str = "yl/v1/+/+/status";
/// The site id reserved for fleet topics.
const RESERVED_SITE: &str = "fleet";

/// Which way a channel flows and what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Agent → hub: signed data envelopes.
    Up,
    /// Hub → agent: signed acks of stored sequence ranges.
    Ack,
    /// Hub → agent: signed diagnosis reports.
    Report,
    /// Agent → hub: birth, heartbeat and the retained "offline" will.
    Status,
}

impl Channel {
    /// The last topic segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Up => "up",
            Channel::Ack => "ack",
            Channel::Report => "report",
            Channel::Status => "status",
        }
    }

    /// True where the device is the sender (and signer).
    pub fn is_uplink(self) -> bool {
        matches!(self, Channel::Up | Channel::Status)
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "up" => Channel::Up,
            "ack" => Channel::Ack,
            "report" => Channel::Report,
            "status" => Channel::Status,
            _ => return None,
        })
    }
}

/// A parsed device topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    site: String,
    device: String,
    channel: Channel,
}

impl Topic {
    /// Builds a topic, checking both ids.
    pub fn new(site: &str, device: &str, channel: Channel) -> Result<Self, TopicError> {
        check_slug("site", site)?;
        check_slug("device", device)?;
        if site == RESERVED_SITE {
            return Err(TopicError::Reserved(site.to_string()));
        }
        Ok(Self { site: site.to_string(), device: device.to_string(), channel })
    }

    /// Parses a topic string received from the broker.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let shape = || TopicError::BadShape(truncate(topic));
        let rest = topic.strip_prefix(PREFIX).and_then(|r| r.strip_prefix('/')).ok_or_else(shape)?;
        let mut parts = rest.split('/');
        let (Some(site), Some(device), Some(channel), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(shape());
        };
        let channel = Channel::parse(channel).ok_or_else(shape)?;
        Self::new(site, device, channel)
    }

    /// The site id.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// The device id.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The channel.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The same device's topic on another channel.
    pub fn with_channel(&self, channel: Channel) -> Self {
        Self { channel, ..self.clone() }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}/{}/{}/{}", self.site, self.device, self.channel.as_str())
    }
}

/// The fleet topic of an update group.
pub fn fleet_topic(group: &str) -> Result<String, TopicError> {
    check_slug("group", group)?;
    Ok(format!("{PREFIX}/{RESERVED_SITE}/{group}"))
}

/// Checks that `id` is a short ASCII slug: 1-32 of `[A-Za-z0-9_-]`, starting alphanumeric.
pub fn check_slug(what: &'static str, id: &str) -> Result<(), TopicError> {
    let ok = !id.is_empty()
        && id.len() <= 32
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && id.as_bytes()[0].is_ascii_alphanumeric();
    if ok { Ok(()) } else { Err(TopicError::BadId { what, id: truncate(id) }) }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses_every_channel() {
        for ch in [Channel::Up, Channel::Ack, Channel::Report, Channel::Status] {
            let t = Topic::new("xiangzhen-3", "cart_01", ch).expect("valid");
            let s = t.to_string();
            assert_eq!(s, format!("yl/v1/xiangzhen-3/cart_01/{}", ch.as_str()));
            assert_eq!(Topic::parse(&s).expect("parse"), t);
        }
    }

    #[test]
    fn rejects_ids_that_are_not_slugs() {
        for bad in ["", "a/b", "+", "#", "-lead", "a b", "卫生院", &"x".repeat(33)] {
            assert!(matches!(Topic::new(bad, "d", Channel::Up), Err(TopicError::BadId { .. })), "{bad:?}");
            assert!(matches!(Topic::new("s", bad, Channel::Up), Err(TopicError::BadId { .. })), "{bad:?}");
        }
        assert!(matches!(Topic::new("fleet", "d", Channel::Up), Err(TopicError::Reserved(_))));
    }

    #[test]
    fn rejects_topics_of_other_shapes() {
        for bad in ["yl/v1/s/d", "yl/v1/s/d/up/x", "yl/v2/s/d/up", "yl/v1/s/d/down", "yl/v1//d/up", ""] {
            assert!(Topic::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(fleet_topic("stable").expect("slug"), "yl/v1/fleet/stable");
    }
}

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// `mqtts://` (TLS) rather than `mqtt://` (plaintext).
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Parses `mqtts://host:port` (TLS, port defaults to 8883) or `mqtt://host:port` (plaintext,
/// 1883).
pub fn parse_broker_url(url: &str) -> Result<BrokerUrl, TopicError> {
    let (tls, rest, default_port) = match url.strip_prefix("mqtts://") {
        Some(rest) => (true, rest, 8883),
        None => (false, url.strip_prefix("mqtt://").ok_or_else(|| TopicError::BadShape(truncate(url)))?, 1883),
    };
    let (host, port) = host_port(url, rest, default_port)?;
    Ok(BrokerUrl { tls, host, port })
}

/// Parses a broker address `mqtts://host:port` or `mqtt://host:port` into host and port.
pub fn broker_addr(url: &str) -> Result<(String, u16), TopicError> {
    let u = parse_broker_url(url)?;
    Ok((u.host, u.port))
}

fn host_port(url: &str, rest: &str, default_port: u16) -> Result<(String, u16), TopicError> {
    let bad = || TopicError::BadShape(truncate(url));
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (rest, default_port),
    };
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() || host.contains('/') || host.contains('[') || host.contains(']') {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod broker_tests {
    use super::*;

    #[test]
    fn broker_urls_parse() {
        assert_eq!(broker_addr("mqtt://127.0.0.1:1884").expect("url"), ("127.0.0.1".into(), 1884));
        assert_eq!(broker_addr("mqtt://hub.county").expect("url"), ("hub.county".into(), 1883));
        assert!(broker_addr("http://x:1").is_err());
        assert!(broker_addr("mqtt://x:notaport").is_err());
        assert!(broker_addr("mqtt://").is_err());
        assert!(broker_addr("mqtt://[]").is_err(), "empty host in brackets");
        assert!(broker_addr("mqtt://[]:1883").is_err());
        assert_eq!(broker_addr("mqtt://[::1]:1884").expect("v6"), ("::1".into(), 1884));
        let tls = parse_broker_url("mqtts://hub.county").expect("tls url");
        assert_eq!(tls, BrokerUrl { tls: true, host: "hub.county".into(), port: 8883 });
        assert!(!parse_broker_url("mqtt://127.0.0.1:1884").expect("url").tls);
        assert!(parse_broker_url("mqtts://").is_err());
    }
}
