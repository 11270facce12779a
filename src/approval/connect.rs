//! People sign mcp-warden in to upstreams for themselves (`per = "user"`): when a person's
//! call needs their own sign-in, their agent is given a link, `/oauth/connect/<handle>`; the
//! person opens it, proves who they are at the identity provider of `[auth.oidc]`
//! ([`crate::oidc_login`]), and only when that is the person whose call asked do they go on to
//! the upstream's authorization server, whose grant is then theirs alone.
//!
//! Must not: let the link grant anything by itself (it names a sign-in to make, for one
//! person; whoever opens it must be that person), or put anything about the person in it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::control::{
    flow_cookie, html_escape, message_page, sign_in_page, Ctl, SignInFlow, Stage,
};

/// Who signs in, in a person's flow (the log's `by`; an operator's flow has their name).
pub(super) const PERSON: &str = "person";

/// How long a link can be used.
const LINK_TTL: Duration = Duration::from_secs(600);
/// Links alive at once (the oldest go first).
const MAX_LINKS: usize = 1024;

/// A sign-in a person is asked to make: upstream `upstream`, for their calls through `agent`.
#[derive(Debug, Clone)]
pub struct Link {
    pub upstream: String,
    pub agent: Option<String>,
    /// `iss sub`: the only person who may make it.
    pub person: Arc<str>,
    until: Instant,
}

/// The live links, by handle.
#[derive(Default)]
pub struct Links {
    map: Mutex<HashMap<String, Link>>,
}

impl Links {
    /// The handle of the link for this person's sign-in to `upstream` (the live one if there
    /// is one: an agent that calls again gets the same link).
    pub fn link(&self, upstream: &str, agent: Option<&str>, person: &Arc<str>) -> String {
        let now = Instant::now();
        let mut map = crate::util::lock(&self.map);
        map.retain(|_, l| l.until > now);
        if let Some((h, _)) = map.iter().find(|(_, l)| {
            l.upstream == upstream && l.agent.as_deref() == agent && l.person == *person
        }) {
            return h.clone();
        }
        if map.len() >= MAX_LINKS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, l)| l.until)
                .map(|(h, _)| h.clone())
            {
                map.remove(&oldest);
            }
        }
        let handle = super::random_id(16);
        map.insert(
            handle.clone(),
            Link {
                upstream: upstream.to_string(),
                agent: agent.map(str::to_string),
                person: person.clone(),
                until: now + LINK_TTL,
            },
        );
        handle
    }

    fn get(&self, handle: &str) -> Option<Link> {
        let map = crate::util::lock(&self.map);
        map.get(handle)
            .filter(|l| l.until > Instant::now())
            .cloned()
    }
}

/// `GET /oauth/connect/<handle>`: what the link is for, and the way on to the identity
/// provider (a plain link: the page runs no script), bound to this browser by the flow cookie.
pub(super) async fn open(
    State(ctl): State<Ctl>,
    Path(handle): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(link) = ctl.broker.links.get(&handle) else {
        return message_page(
            StatusCode::NOT_FOUND,
            "This sign-in link is unknown or has expired: make the call again through your agent for a new one.",
        );
    };
    let Some(cfg) = ctl.cfg.as_ref().map(|c| c()) else {
        return message_page(StatusCode::NOT_FOUND, "Not found.");
    };
    let (Some(settings), Some(origin)) = (cfg.oidc.clone(), cfg.proxy.origin(&headers)) else {
        return message_page(
            StatusCode::NOT_FOUND,
            "Sign-ins per person are not configured here.",
        );
    };
    let redirect = format!("{origin}/oauth/callback");
    let (authorize, pending) = match crate::oidc_login::start(&settings, &redirect).await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(upstream = %link.upstream, "a person's sign-in could not start: {e}");
            return message_page(
                StatusCode::BAD_GATEWAY,
                "The identity provider cannot be reached just now: try again in a moment.",
            );
        }
    };
    let what = describe(&link);
    let cookie = super::random_id(24);
    let state = pending.state.clone();
    let flow = SignInFlow::new(
        Stage::Person { link, pending },
        cookie.clone(),
        PERSON.into(),
        what.clone(),
        Some(handle),
    );
    if let Err(r) = ctl.begin_flow(state, flow) {
        return r.into_response();
    }
    tracing::info!(upstream = %what, "a person's sign-in started from their link");
    let content = format!(
        "<h1>Sign in to {up}</h1><p>Your agent's call needs your own sign-in to {up}. mcp-warden first asks your identity provider who you are: only the person whose call asked can go on. Then {up}'s own sign-in page asks you to allow mcp-warden to act for you; your sign-in serves only your calls.</p><p><a href=\"{href}\">Continue</a></p>",
        up = html_escape(&what),
        href = html_escape(&authorize),
    );
    let mut r = sign_in_page(StatusCode::OK, &content);
    if let Some(v) = flow_cookie(&origin, &cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

fn describe(link: &Link) -> String {
    match &link.agent {
        Some(a) => format!("{} (agent {a})", link.upstream),
        None => link.upstream.clone(),
    }
}

/// A person's flow at its identity step: its cookie, its link and that link's handle.
pub(super) struct Step {
    pub(super) cookie: String,
    pub(super) handle: Option<String>,
    pub(super) link: Link,
}

/// The identity provider's redirect back, in the browser that opened the link: the person it
/// names must be the link's; then on to the upstream's sign-in, for that person.
pub(super) async fn person_proved(
    ctl: &Ctl,
    headers: &HeaderMap,
    step: Step,
    pending: crate::oidc_login::Pending,
    query: &str,
) -> Response {
    let Step {
        cookie,
        handle,
        link,
    } = step;
    let what = describe(&link);
    let Some(cfg) = ctl.cfg.as_ref().map(|c| c()) else {
        return message_page(StatusCode::NOT_FOUND, "Not found.");
    };
    let (Some(settings), Some(origin)) = (cfg.oidc.clone(), cfg.proxy.origin(headers)) else {
        return message_page(
            StatusCode::NOT_FOUND,
            "Sign-ins per person are not configured here.",
        );
    };
    let person = match crate::oidc_login::finish(&settings, pending, query).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(upstream = %what, "a person's sign-in failed at the identity provider: {e}");
            return message_page(StatusCode::BAD_REQUEST, &format!("The sign-in failed: {e}"));
        }
    };
    if !bool::from(person.as_bytes().ct_eq(link.person.as_bytes())) {
        tracing::warn!(upstream = %what, "a sign-in link was opened by another person than the one whose call asked: refused");
        crate::metrics::METRICS.sign_in("refused");
        ctl.broker.audit(serde_json::json!({
            "kind": "upstream.sign_in_refused",
            "upstream": what,
            "person": &*link.person,
            "signed_in_as": person,
        }));
        return message_page(
            StatusCode::FORBIDDEN,
            "You signed in as someone else than the person whose call asked for this sign-in. Only they can make it: the link is theirs.",
        );
    }
    let redirect = format!("{origin}/oauth/callback");
    let who = crate::upstream::oauth_login::For {
        agent: link.agent.as_deref(),
        person: Some(&person),
    };
    let (authorize, pending) = match crate::upstream::oauth_login::start(
        &cfg,
        &link.upstream,
        who,
        &redirect,
    )
    .await
    {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(upstream = %what, "a person's upstream sign-in could not start: {e}");
            return message_page(
                StatusCode::BAD_GATEWAY,
                "The upstream's sign-in could not start just now: try the link again in a moment.",
            );
        }
    };
    let state = pending.state.clone();
    let flow = SignInFlow::new(
        Stage::Upstream {
            pending,
            person: Some(person.clone()),
        },
        cookie.clone(),
        PERSON.into(),
        what,
        handle,
    );
    if let Err(r) = ctl.begin_flow(state, flow) {
        return r.into_response();
    }
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, authorize)]).into_response();
    if let Some(v) = flow_cookie(&origin, &cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
