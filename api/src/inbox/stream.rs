//! `GET /v1/inbox/stream` (SSE) and `GET /v1/inbox/ws` (WebSocket): a user's inbox events in
//! real time, resumable by event id.
//!
//! A [`Session`] subscribes to the process's [`InboxHub`] first, then replays the user's events
//! after the client's last event id from the store page by page, then forwards live events,
//! dropping any the replay already sent (by sequence number). Because the store numbers events
//! in commit order, "everything after n" is complete: across a reconnect no event is missed and
//! none repeats. Both transports carry the same JSON frames and ids.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use fanout_domain::inbox::InboxMessage;
use fanout_domain::{InstanceId, TenantId, UnixMillis, UserId};
use fanout_store::inbox::{InboxChange, InboxEvent};
use fanout_store::{Store, StoreError, now_ms};
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};

use super::hub::{InboxHub, SubscribeError, Subscription};
use super::token::{InboxUser, StreamUser};
use crate::AppState;
use crate::error::{ApiError, ApiQuery, ErrorBody};

/// Query of both stream routes (besides `ticket` and `token`, read by [`StreamUser`]).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Resume after this event id (for WebSocket clients, and SSE clients that cannot set the
    /// `Last-Event-ID` header). Without one, the stream starts at the current position.
    #[serde(default)]
    #[param(value_type = Option<u64>)]
    last_event_id: Option<String>,
}

/// One frame of either stream, as JSON. `id` is a global, monotonic event sequence: resume
/// after the last one received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = InboxStreamFrame)]
pub struct StreamFrame {
    /// The event id (for `ready`: the position the stream has caught up to).
    pub id: i64,
    /// What happened.
    #[serde(flatten)]
    pub body: FrameBody,
}

/// What a frame says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = InboxStreamFrameBody)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FrameBody {
    /// A new message.
    Message {
        /// The message, as the inbox listing shows it.
        message: InboxMessage,
    },
    /// A message was read (on this or another device).
    Read {
        /// The message.
        message_id: InstanceId,
        /// When.
        #[schema(value_type = i64)]
        read_at_ms: UnixMillis,
    },
    /// Every message received before this frame is read.
    ReadAll {
        /// When.
        #[schema(value_type = i64)]
        read_at_ms: UnixMillis,
    },
    /// The replay is done; live events follow. Sent once per connection.
    Ready,
    /// The stream resumed from an event older than the store keeps (see the README's
    /// retention): events may have been missed, so the client re-lists the inbox
    /// (`GET /v1/inbox`) and then carries on with this stream, which goes on from `id`.
    Reset,
}

impl StreamFrame {
    fn name(&self) -> &'static str {
        match self.body {
            FrameBody::Message { .. } => "message",
            FrameBody::Read { .. } => "read",
            FrameBody::ReadAll { .. } => "read_all",
            FrameBody::Ready => "ready",
            FrameBody::Reset => "reset",
        }
    }

    /// The frame a client sees for an event, if any (revocations are not shown).
    fn of(event: &InboxEvent) -> Option<Self> {
        let body = match &event.change {
            InboxChange::Message(m) => FrameBody::Message {
                message: (**m).clone(),
            },
            InboxChange::Read {
                message_id,
                read_at_ms,
            } => FrameBody::Read {
                message_id: message_id.clone(),
                read_at_ms: *read_at_ms,
            },
            InboxChange::ReadAll { read_at_ms } => FrameBody::ReadAll {
                read_at_ms: *read_at_ms,
            },
            InboxChange::TokenRevoked { .. } => return None,
        };
        Some(Self {
            id: event.seq,
            body,
        })
    }
}

/// One Server-Sent Event as `text/event-stream` carries it, for the OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
struct SseEvent {
    /// The event id: resume after it.
    #[schema(pattern = "^[0-9]+$")]
    id: Option<String>,
    /// The frame type: `message`, `read`, `read_all`, `ready` or `reset`.
    #[schema(pattern = "^(message|read|read_all|ready|reset)$")]
    event: Option<String>,
    /// An InboxStreamFrame as JSON.
    #[schema(content_media_type = "application/json")]
    data: String,
}

/// One connection's position in its user's event sequence.
pub struct Session {
    store: Store,
    tenant_id: TenantId,
    user_id: UserId,
    live: Subscription,
    /// The last event id the client has been sent (or that needed no frame).
    last_seq: i64,
    /// Where the replay page fetched last ended; reached once `pending` drains.
    replayed_to: i64,
    replaying: bool,
    ready_sent: bool,
    /// A `reset` frame is owed before anything else (see [`FrameBody::Reset`]).
    reset_pending: bool,
    pending: VecDeque<InboxEvent>,
    page: u32,
    /// When the token expires; the stream ends then.
    deadline: Instant,
}

impl Session {
    /// Subscribes, then positions the session after `last_event_id` (or at the current end).
    pub async fn open(
        hub: &InboxHub,
        store: &Store,
        user: &InboxUser,
        last_event_id: Option<i64>,
    ) -> Result<Self, SubscribeError> {
        let live = hub
            .subscribe(
                user.tenant_id.clone(),
                user.user_id.clone(),
                user.token_id.clone(),
            )
            .await?;
        let pruned_through = match last_event_id {
            Some(_) => store.inbox_events_pruned_through().await?,
            None => 0,
        };
        let (start, reset) = match last_event_id {
            Some(id) if id >= pruned_through => (id, false),
            Some(_) => (store.last_inbox_seq().await?, true),
            None => (store.last_inbox_seq().await?, false),
        };
        let remaining = u64::try_from(user.expires_at_ms - now_ms()).unwrap_or_default();
        Ok(Self {
            store: store.clone(),
            tenant_id: user.tenant_id.clone(),
            user_id: user.user_id.clone(),
            live,
            last_seq: start,
            replayed_to: start,
            replaying: true,
            ready_sent: false,
            reset_pending: reset,
            pending: VecDeque::new(),
            page: hub.config().replay_page.max(1),
            deadline: Instant::now() + Duration::from_millis(remaining),
        })
    }

    /// The next frame, or `None` when the stream must end (the client fell behind, its token
    /// expired or was revoked). Cancel-safe: state changes only after each await completes.
    pub async fn next(&mut self) -> Result<Option<StreamFrame>, StoreError> {
        if self.reset_pending {
            self.reset_pending = false;
            return Ok(Some(StreamFrame {
                id: self.last_seq,
                body: FrameBody::Reset,
            }));
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.last_seq = event.seq;
                match StreamFrame::of(&event) {
                    Some(frame) => return Ok(Some(frame)),
                    None => continue,
                }
            }
            // Entries the resolution dropped (erased rows) still count as passed.
            self.last_seq = self.last_seq.max(self.replayed_to);
            if self.replaying {
                let entries = self
                    .store
                    .user_inbox_log_after(&self.tenant_id, &self.user_id, self.last_seq, self.page)
                    .await?;
                let events = self.store.resolve_inbox_events(&entries).await?;
                self.replaying = entries.len() == self.page as usize;
                if let Some(last) = entries.last() {
                    self.replayed_to = last.seq;
                }
                self.pending.extend(events);
                continue;
            }
            if !self.ready_sent {
                self.ready_sent = true;
                return Ok(Some(StreamFrame {
                    id: self.last_seq,
                    body: FrameBody::Ready,
                }));
            }
            let event = tokio::select! {
                event = self.live.recv() => event,
                () = tokio::time::sleep_until(self.deadline) => None,
            };
            let Some(event) = event else {
                return Ok(None);
            };
            if event.seq <= self.last_seq {
                continue;
            }
            self.last_seq = event.seq;
            if let Some(frame) = StreamFrame::of(&event) {
                return Ok(Some(frame));
            }
        }
    }
}

/// The client's resume point: `Last-Event-ID` (what `EventSource` sends on reconnect) or
/// `?last_event_id=`.
fn last_event_id(headers: &HeaderMap, query: &StreamQuery) -> Result<Option<i64>, ApiError> {
    let header = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("?"));
    let Some(raw) = header.or(query.last_event_id.as_deref()) else {
        return Ok(None);
    };
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    match raw.parse::<i64>() {
        Ok(id) if id >= 0 => Ok(Some(id)),
        _ => Err(ApiError::InvalidField {
            field: "last_event_id".into(),
            message: "last_event_id must be an event id this stream sent".into(),
        }),
    }
}

/// `GET /v1/inbox/stream`: Server-Sent Events, `id:` the event id, `event:` the frame type,
/// `data:` the JSON frame.
#[utoipa::path(
    get,
    path = "/v1/inbox/stream",
    tag = "inbox",
    summary = "The user's inbox events as Server-Sent Events: replays everything after Last-Event-ID (or ?last_event_id=), sends `ready`, then live events; keep-alive comments",
    description = "Each event has `id:` (the event id; resume after it), `event:` (message, read, read_all, ready or reset) and `data:` (an InboxStreamFrame as JSON). Without a last event id the stream starts at the current position. The stream ends when the token expires or is revoked, or when the client falls further behind than its buffer; reconnect with the last id received to continue with no event missed or repeated. EventSource cannot set headers: pass a single-use `?ticket=` from POST /v1/inbox/stream-ticket (or, for older clients, the token itself as `?token=`).",
    security(("inbox_token" = []), ("stream_ticket" = []), ("inbox_token_query" = [])),
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "The last event id received (EventSource sends it on reconnect)"),
        StreamQuery,
    ),
    responses(
        (status = 200, description = "An event stream; each event's data is an InboxStreamFrame", content_type = "text/event-stream", body = SseEvent),
        (status = 401, description = "No inbox token or ticket, a token that is expired or revoked, or a ticket already used or expired (code unauthorized)", body = ErrorBody),
        (status = 422, description = "last_event_id is not an event id (field last_event_id)", body = ErrorBody),
        (status = 429, description = "The user already holds the most streams one API process allows (20 per user, 10,000 per tenant by default; code rate_limited)", body = ErrorBody),
    )
)]
pub async fn sse(
    State(state): State<AppState>,
    StreamUser(user): StreamUser,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let from = last_event_id(&headers, &query)?;
    let session = Session::open(&state.inbox, &state.store, &user, from).await?;
    let keep_alive = Duration::from_secs(state.inbox.config().keep_alive_seconds.max(1));
    let events = futures::stream::unfold(session, |mut session| async move {
        let frame = match session.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "inbox stream ended by a store error");
                return None;
            }
        };
        let event = Event::default()
            .id(frame.id.to_string())
            .event(frame.name())
            .json_data(&frame)
            .unwrap_or_else(|_| Event::default().comment("unserialisable frame"));
        Some((Ok(event), session))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(keep_alive)))
}

/// `GET /v1/inbox/ws`: one JSON [`StreamFrame`] per text message; pings keep it alive.
#[utoipa::path(
    get,
    path = "/v1/inbox/ws",
    tag = "inbox",
    summary = "The same events over a WebSocket: one InboxStreamFrame per text message, pings as keep-alives; ?last_event_id= to resume",
    description = "Browsers' WebSocket cannot set headers: pass a single-use `?ticket=` from POST /v1/inbox/stream-ticket (or, for older clients, the token itself as `?token=`). Messages from the client are limited to 4 KiB.",
    security(("inbox_token" = []), ("stream_ticket" = []), ("inbox_token_query" = [])),
    params(StreamQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; then one InboxStreamFrame (JSON) per text message"),
        (status = 401, description = "No inbox token or ticket, a token that is expired or revoked, or a ticket already used or expired (code unauthorized)", body = ErrorBody),
        (status = 422, description = "last_event_id is not an event id (field last_event_id)", body = ErrorBody),
        (status = 429, description = "The user already holds the most streams one API process allows (code rate_limited)", body = ErrorBody),
    )
)]
pub async fn ws(
    State(state): State<AppState>,
    StreamUser(user): StreamUser,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let from = last_event_id(&headers, &query)?;
    let session = Session::open(&state.inbox, &state.store, &user, from).await?;
    let keep_alive = Duration::from_secs(state.inbox.config().keep_alive_seconds.max(1));
    // Clients only listen, so what they may send is small: a larger message or frame closes
    // that connection and no other.
    let max_message = state.inbox.config().max_ws_message_bytes;
    Ok(upgrade
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| serve_ws(socket, session, keep_alive))
        .into_response())
}

async fn serve_ws(mut socket: WebSocket, mut session: Session, keep_alive: Duration) {
    let mut ping = tokio::time::interval_at(Instant::now() + keep_alive, keep_alive);
    loop {
        tokio::select! {
            frame = session.next() => {
                let frame = match frame {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "inbox websocket ended by a store error");
                        break;
                    }
                };
                let Ok(text) = serde_json::to_string(&frame) else {
                    break;
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                // Clients only listen; pongs and anything else they send are ignored.
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
