//! [`IceLite`]: the ICE-lite agent of one transport (RFC 8445 §2.5, with consent
//! freshness from RFC 7675).

use core::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::credentials::{CredentialsError, IceCredentials};
use super::stun::{self, HmacSha1, StunClass, StunError, StunMessage, StunMethod};

/// How many validated source addresses one agent remembers. Browsers check one pair per
/// local candidate per remote candidate, so a handful covers host, server-reflexive and
/// relayed paths over IPv4 and IPv6; more would only help an attacker who has the
/// password.
pub const MAX_VALID_SOURCES: usize = 8;

/// RFC 7675 §5.1: consent expires 30 s after the last valid check.
pub const DEFAULT_CONSENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Tunables of an [`IceLite`] agent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IceConfig {
    /// How long after the last valid check the agent gives up on the peer: it emits
    /// [`IceEvent::ConsentExpired`] and stops answering. Also bounds how long the first
    /// check may take to arrive after [`IceLite::new`]. Default 30 s (RFC 7675).
    pub consent_timeout: Duration,
}

impl Default for IceConfig {
    fn default() -> Self {
        Self {
            consent_timeout: DEFAULT_CONSENT_TIMEOUT,
        }
    }
}

/// Why a packet was not answered, or credentials were refused.
///
/// None of these is fatal to the agent except [`IceError::ConsentExpired`]: a bad packet
/// is dropped and the agent keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IceError {
    /// The packet is not a valid STUN message or failed FINGERPRINT or
    /// MESSAGE-INTEGRITY, or the response did not fit the output buffer.
    #[error(transparent)]
    Stun(#[from] StunError),
    /// Credentials handed to the agent are invalid.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// A STUN response: a lite agent sends no requests, so it expects none.
    #[error("unexpected STUN {0:?}: an ICE-lite agent only receives requests")]
    UnexpectedClass(StunClass),
    /// A STUN method other than Binding.
    #[error("unsupported STUN method 0x{0:03x}: ICE uses Binding only")]
    UnsupportedMethod(u16),
    /// The check has no USERNAME.
    #[error("connectivity check has no USERNAME")]
    MissingUsername,
    /// USERNAME is not `"<local ufrag>:<remote ufrag>"`.
    #[error("USERNAME is not of the form '<local ufrag>:<remote ufrag>'")]
    MalformedUsername,
    /// The part of USERNAME before the colon is not our ufrag. The value is not included
    /// because credentials stay out of logs.
    #[error("USERNAME does not match the local ufrag")]
    LocalUfragMismatch,
    /// The part of USERNAME after the colon is not the remote ufrag set with
    /// [`IceLite::set_remote_credentials`].
    #[error("USERNAME does not match the remote ufrag")]
    RemoteUfragMismatch,
    /// The check carries neither ICE-CONTROLLING nor ICE-CONTROLLED.
    #[error("connectivity check has neither ICE-CONTROLLING nor ICE-CONTROLLED")]
    MissingRole,
    /// The check carries both ICE-CONTROLLING and ICE-CONTROLLED.
    #[error("connectivity check has both ICE-CONTROLLING and ICE-CONTROLLED")]
    AmbiguousRole,
    /// The check carries a comprehension-required attribute this agent does not know.
    #[error("connectivity check carries unknown comprehension-required attribute 0x{0:04x}")]
    UnknownAttribute(u16),
    /// Consent expired earlier; the agent no longer answers checks.
    #[error("ICE consent expired; the agent no longer answers checks")]
    ConsentExpired,
}

/// Something the owner of an [`IceLite`] must act on, from [`IceLite::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IceEvent {
    /// The first pair is selected: start DTLS, send to this address.
    Connected(SocketAddr),
    /// The peer moved the selected pair (nomination on another path): send here now.
    SelectedChanged(SocketAddr),
    /// No valid check arrived within the consent timeout: stop sending and close the
    /// transport. Emitted once; the agent is finished.
    ConsentExpired,
}

/// Where an [`IceLite`] agent is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IceState {
    /// Waiting for the first valid check.
    Checking,
    /// A pair is selected.
    Connected,
    /// Consent expired; terminal.
    ConsentExpired,
}

#[derive(Debug, Clone, Copy)]
struct ValidSource {
    addr: SocketAddr,
    last_check: Instant,
}

/// The 5-tuples a valid check has come from, in a fixed array: no heap growth per packet
/// and a linear scan that is cheaper than hashing at this size.
#[derive(Debug, Clone)]
struct ValidSources {
    slots: [Option<ValidSource>; MAX_VALID_SOURCES],
}

impl ValidSources {
    fn new() -> Self {
        Self {
            slots: [None; MAX_VALID_SOURCES],
        }
    }

    fn contains(&self, addr: SocketAddr) -> bool {
        self.slots.iter().flatten().any(|s| s.addr == addr)
    }

    /// Records a valid check from `addr`. When full, evicts the source checked longest
    /// ago, never `keep` (the selected pair, which media depends on).
    fn record(&mut self, addr: SocketAddr, now: Instant, keep: Option<SocketAddr>) {
        if let Some(s) = self.slots.iter_mut().flatten().find(|s| s.addr == addr) {
            s.last_check = s.last_check.max(now);
            return;
        }
        let entry = Some(ValidSource {
            addr,
            last_check: now,
        });
        if let Some(slot) = self.slots.iter_mut().find(|s| s.is_none()) {
            *slot = entry;
            return;
        }
        let victim = self
            .slots
            .iter_mut()
            .filter(|s| s.is_some_and(|s| Some(s.addr) != keep))
            .min_by_key(|s| s.map(|s| s.last_check));
        if let Some(slot) = victim {
            *slot = entry;
        }
    }

    fn clear(&mut self) {
        self.slots = [None; MAX_VALID_SOURCES];
    }
}

/// Events waiting for [`IceLite::poll_event`], in fixed slots rather than a queue so an
/// owner that polls late cannot make it grow. Connected happens once, SelectedChanged is
/// coalesced to the latest address, and ConsentExpired is terminal, so draining the slots
/// in that order is the order the events happened in.
#[derive(Debug, Clone, Default)]
struct PendingEvents {
    connected: Option<SocketAddr>,
    selected_changed: Option<SocketAddr>,
    consent_expired: bool,
}

/// The ICE-lite agent of one transport: answers connectivity checks, tracks which
/// 5-tuples are valid, follows the peer's nomination and enforces consent freshness.
///
/// It is sans-IO: no clock, socket or timer inside. The SFU is always the controlled
/// agent; it never sends checks. One agent serves one ICE generation: an ICE restart
/// (new credentials) creates a new agent.
///
/// # Calling order
///
/// 1. Create it with [`IceLite::new`] when the transport is created, and register its
///    ufrag ([`IceCredentials::ufrag`]) in the per-core routing table. If the peer's SDP
///    is known, call [`IceLite::set_remote_credentials`].
/// 2. For every datagram for this transport that [`stun::is_stun`] accepts, call
///    [`IceLite::handle_binding_request`] with the current time, the source address and a
///    send buffer. On `Ok(Some(n))` send `out[..n]` back to the source; on `Ok(None)`
///    send nothing; on `Err` drop the packet (log it, rate-limited).
/// 3. Accept DTLS and SRTP datagrams only from addresses where
///    [`IceLite::is_valid_source`] is true, and send to [`IceLite::selected`].
/// 4. After each `handle_*` call, drain [`IceLite::poll_event`] until it returns `None`.
/// 5. After each `handle_*` call, (re)arm the transport's timer at
///    [`IceLite::poll_timeout`]; when it fires, call [`IceLite::handle_timeout`] and go
///    to step 4. `None` means no timer is needed.
///
/// [`IceEvent::ConsentExpired`] is the end: close the transport and drop the agent.
///
/// # Nomination
///
/// The peer, as controlling agent, nominates by sending USE-CANDIDATE; a valid check
/// with USE-CANDIDATE selects its source, switching away from any earlier selection.
/// Before any nomination, the first valid check selects its source anyway, so that DTLS
/// can start one round trip earlier; a later USE-CANDIDATE check (browsers using regular
/// nomination send one) moves the selection if it names another path. A check without
/// USE-CANDIDATE never moves an existing selection.
///
/// # Consent
///
/// Every valid check, from any valid source, refreshes consent. If none arrives for
/// [`IceConfig::consent_timeout`] (from creation, or from the last one), the agent emits
/// [`IceEvent::ConsentExpired`] once, forgets its sources and selection and rejects all
/// further checks with [`IceError::ConsentExpired`].
pub struct IceLite {
    local: IceCredentials,
    remote: Option<IceCredentials>,
    /// HMAC keyed with the local password, cloned per check so the pads are derived once.
    integrity: HmacSha1,
    config: IceConfig,
    state: IceState,
    sources: ValidSources,
    selected: Option<SocketAddr>,
    last_valid_check: Instant,
    pending: PendingEvents,
}

impl IceLite {
    /// A new agent with local credentials `local`, created at `now`, with the default
    /// [`IceConfig`].
    pub fn new(local: IceCredentials, now: Instant) -> Self {
        Self::with_config(local, IceConfig::default(), now)
    }

    /// A new agent with explicit tunables.
    pub fn with_config(local: IceCredentials, config: IceConfig, now: Instant) -> Self {
        let integrity = stun::hmac_sha1(local.pwd().as_bytes());
        Self {
            local,
            remote: None,
            integrity,
            config,
            state: IceState::Checking,
            sources: ValidSources::new(),
            selected: None,
            last_valid_check: now,
            pending: PendingEvents::default(),
        }
    }

    /// Records the peer's credentials from its SDP.
    ///
    /// Optional: a lite agent authenticates checks with its own password only. Once set,
    /// checks whose USERNAME names another remote ufrag are rejected, which stops a
    /// stale peer of an earlier ICE generation from refreshing consent.
    pub fn set_remote_credentials(&mut self, ufrag: &str, pwd: &str) -> Result<(), IceError> {
        self.remote = Some(IceCredentials::new(ufrag, pwd)?);
        Ok(())
    }

    /// Our credentials.
    pub fn local_credentials(&self) -> &IceCredentials {
        &self.local
    }

    /// The peer's credentials, if set.
    pub fn remote_credentials(&self) -> Option<&IceCredentials> {
        self.remote.as_ref()
    }

    /// Where the agent is in its life.
    pub fn state(&self) -> IceState {
        self.state
    }

    /// Handles a STUN packet from `source` and writes any response into `out`.
    ///
    /// - A valid Binding request (FINGERPRINT, USERNAME `"<local ufrag>:<remote ufrag>"`,
    ///   MESSAGE-INTEGRITY keyed with the local password, ICE-CONTROLLING) is answered
    ///   with a success response carrying `source` as XOR-MAPPED-ADDRESS: `Ok(Some(len))`.
    ///   `source` becomes a valid 5-tuple and may be selected (see the type's docs).
    /// - A valid request with ICE-CONTROLLED is answered with a 487 Role Conflict error
    ///   response, `Ok(Some(len))`, and changes nothing: a lite agent cannot take the
    ///   controlling role, so the peer has to.
    /// - A Binding indication (a keepalive) needs no answer: `Ok(None)`.
    /// - Anything else is an `Err` and changes nothing. Unauthenticated requests get no
    ///   401 response, so the SFU cannot be used to reflect traffic at third parties.
    ///
    /// `out` of [`stun::BINDING_SUCCESS_V6_LEN`] bytes always suffices. If `out` is too
    /// small the request is not recorded, so the peer's retransmission can succeed.
    pub fn handle_binding_request(
        &mut self,
        now: Instant,
        source: SocketAddr,
        packet: &[u8],
        out: &mut [u8],
    ) -> Result<Option<usize>, IceError> {
        // A late check must not revive an agent whose deadline passed before the owner
        // got round to calling handle_timeout.
        self.handle_timeout(now);
        if self.state == IceState::ConsentExpired {
            return Err(IceError::ConsentExpired);
        }
        let msg = StunMessage::parse(packet)?;
        if msg.method() != StunMethod::BINDING {
            return Err(IceError::UnsupportedMethod(msg.method().value()));
        }
        match msg.class() {
            StunClass::Request => {}
            StunClass::Indication => return Ok(None),
            class => return Err(IceError::UnexpectedClass(class)),
        }
        // RFC 8445 §7.2.2: checks always carry FINGERPRINT. Cheap, so it goes first.
        msg.verify_fingerprint()?;
        let username = msg.username().ok_or(IceError::MissingUsername)?;
        let (local_ufrag, remote_ufrag) = username
            .split_once(':')
            .ok_or(IceError::MalformedUsername)?;
        if local_ufrag != self.local.ufrag() {
            return Err(IceError::LocalUfragMismatch);
        }
        msg.verify_integrity_with(self.integrity.clone())?;
        if let Some(remote) = &self.remote {
            if remote_ufrag != remote.ufrag() {
                return Err(IceError::RemoteUfragMismatch);
            }
        }
        if let Some(t) = msg.unknown_comprehension_required() {
            return Err(IceError::UnknownAttribute(t));
        }
        match (msg.ice_controlling(), msg.ice_controlled()) {
            (Some(_), None) => {}
            (None, Some(_)) => {
                let len = stun::write_binding_error_with(
                    out,
                    msg.transaction_id(),
                    stun::ERROR_ROLE_CONFLICT,
                    "Role Conflict",
                    self.integrity.clone(),
                )?;
                return Ok(Some(len));
            }
            (None, None) => return Err(IceError::MissingRole),
            (Some(_), Some(_)) => return Err(IceError::AmbiguousRole),
        }
        // Peers see an IPv4 source on a dual-stack socket as plain IPv4.
        let mapped = SocketAddr::new(source.ip().to_canonical(), source.port());
        let len = stun::write_binding_success_with(
            out,
            msg.transaction_id(),
            mapped,
            self.integrity.clone(),
        )?;
        self.record_valid_check(now, source, msg.use_candidate());
        Ok(Some(len))
    }

    fn record_valid_check(&mut self, now: Instant, source: SocketAddr, use_candidate: bool) {
        self.last_valid_check = self.last_valid_check.max(now);
        self.sources.record(source, now, self.selected);
        let nominate = use_candidate || self.selected.is_none();
        if !nominate || self.selected == Some(source) {
            return;
        }
        if self.selected.is_none() {
            self.state = IceState::Connected;
            self.pending.connected = Some(source);
        } else {
            self.pending.selected_changed = Some(source);
        }
        self.selected = Some(source);
    }

    /// Whether `addr` has sent a valid check, so DTLS and media from it may be accepted.
    pub fn is_valid_source(&self, addr: SocketAddr) -> bool {
        self.sources.contains(addr)
    }

    /// The selected remote address: where to send DTLS and media. `None` before the
    /// first valid check and after consent expired.
    pub fn selected(&self) -> Option<SocketAddr> {
        self.selected
    }

    /// The next event, if any. Drain after every `handle_*` call.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<IceEvent> {
        if let Some(addr) = self.pending.connected.take() {
            return Some(IceEvent::Connected(addr));
        }
        if let Some(addr) = self.pending.selected_changed.take() {
            return Some(IceEvent::SelectedChanged(addr));
        }
        if core::mem::take(&mut self.pending.consent_expired) {
            return Some(IceEvent::ConsentExpired);
        }
        None
    }

    /// When [`Self::handle_timeout`] must next be called: the consent deadline. `None`
    /// once consent expired.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            IceState::ConsentExpired => None,
            _ => self
                .last_valid_check
                .checked_add(self.config.consent_timeout),
        }
    }

    /// Advances time to `now`: expires consent if its deadline has passed. Calling it
    /// early or repeatedly is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|deadline| now >= deadline) {
            self.state = IceState::ConsentExpired;
            self.selected = None;
            self.sources.clear();
            self.pending.consent_expired = true;
        }
    }
}

impl fmt::Debug for IceLite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The HMAC state is derived from the password, so it stays out; addresses are
        // left to the caller's redacting wrapper.
        f.debug_struct("IceLite")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("config", &self.config)
            .field("state", &self.state)
            .field(
                "valid_sources",
                &self.sources.slots.iter().flatten().count(),
            )
            .field("last_valid_check", &self.last_valid_check)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
