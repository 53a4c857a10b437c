//! The classroom side of the real-time layer: the `Gate` that tells the signaling crate who a token
//! is, who may join which room with which rights, and what socket commands do (by the same rules as
//! the HTTP API); `push` (domain events → room and user channels, consent revocation → kicks); and
//! `chat` (batched persistence and history).
//!
//! Rooms: `user:<user id>` (automatic, personal pushes), `meeting:<meeting id>` (a live class
//! meeting: staff, its instructor and enrolled students — minors only with live-video consent, and
//! chat only with chat consent), `lesson:<booking id>` (a booked lesson: its tutor, student and staff,
//! inside the lesson window; both participants in starts it), `lobby:<tenant id>:<name>` (open to every
//! member of that tenant).

pub mod chat;
pub mod push;

use std::sync::Arc;

use futures::future::BoxFuture;
use signaling::gate::{Denied, Gate, Identity, Publisher, RoomGrant};

use crate::{
    auth::{AuthUser, Role, Tokens},
    bookings,
    classes::{
        AttendanceStatus,
        attendance::{self, StudentMark},
        load_meeting,
    },
    consent::{self, ConsentScope},
    error::ApiError,
    identity::users,
    ids::{BookingId, MeetingId, UserId},
    live::{Access, Seat},
    request::ClientInfo,
};

impl From<ApiError> for Denied {
    fn from(e: ApiError) -> Self {
        Denied::new(e.code.into_owned(), e.message)
    }
}

/// A domain's refusal reaches the socket as the API would say it.
macro_rules! denied_from {
    ($($err:ty),*) => {$(
        impl From<$err> for Denied {
            fn from(e: $err) -> Self {
                ApiError::from(e).into()
            }
        }
    )*};
}

denied_from!(bookings::BookingError, crate::identity::IdentityError, crate::classes::ClassError);

pub struct ClassroomGate {
    /// The classes context: the database, clock, outbox and config the room rules and commands use.
    pub classes: crate::classes::Ctx,
    pub tokens: Arc<Tokens>,
    pub chat: chat::ChatWriter,
}

fn auth_user(who: &Identity) -> Result<AuthUser, Denied> {
    let bad = || Denied::new("unauthorized", "the connection's identity is malformed");
    Ok(AuthUser {
        user_id: who.user_id.parse().map_err(|_| bad())?,
        tenant_id: who.tenant_id.parse().map_err(|_| bad())?,
        role: Role::parse(&who.role).ok_or_else(bad)?,
    })
}

/// The real-time rights of a seat in a lesson or meeting room.
fn grant_for(access: Access, auth: &AuthUser) -> RoomGrant {
    match access.seat {
        Seat::Student => RoomGrant { chat: access.chat, ..RoomGrant::PARTICIPANT },
        Seat::Tutor => RoomGrant::ALL,
        // Staff run the room; parents watching (the tenant's `parents_observe`) only read.
        Seat::Observer if auth.is_staff() => RoomGrant::ALL,
        Seat::Observer => RoomGrant::READ_ONLY,
    }
}

fn meeting_of(room: &str) -> Option<MeetingId> {
    room.strip_prefix("meeting:")?.parse().ok()
}

fn lesson_of(room: &str) -> Option<BookingId> {
    room.strip_prefix("lesson:")?.parse().ok()
}

impl ClassroomGate {
    async fn authorize_meeting(&self, who: &Identity, meeting: MeetingId) -> Result<RoomGrant, Denied> {
        let auth = auth_user(who)?;
        let mut conn = self.classes.db.pool().acquire().await.map_err(ApiError::from)?;
        let (_, class) = load_meeting(&mut conn, auth.tenant_id, meeting, "").await?;
        let user = users::get_or_404(&mut conn, auth.tenant_id, auth.user_id, self.classes.clock.now()).await?;
        // The same rule as media join tokens (`classes::room`), without the media window.
        let access = crate::classes::room::access(&mut conn, &auth, &user, &class).await?;
        Ok(grant_for(access, &auth))
    }

    /// A booked lesson's room, by `bookings::room::access` (the same rule as media join tokens). A
    /// participant's first entry is recorded (the no-show check reads it) and once both participants are
    /// in, the lesson starts.
    async fn authorize_lesson(&self, who: &Identity, id: BookingId) -> Result<RoomGrant, Denied> {
        let auth = auth_user(who)?;
        let now = self.classes.clock.now();
        let mut tx = self.classes.db.begin().await.map_err(ApiError::from)?;
        let mut b = bookings::load(tx.conn(), auth.tenant_id, id, self.classes.db.for_update()).await?;
        let pol = bookings::policy::load(tx.conn(), auth.tenant_id).await?;
        let user = users::get_or_404(tx.conn(), auth.tenant_id, auth.user_id, now).await?;
        let access = bookings::room::access(tx.conn(), &auth, &user, &b, &pol, now).await?;
        let grant = grant_for(access, &auth);
        if access.seat != Seat::Observer {
            bookings::room::arrived(tx.conn(), &mut b, auth.user_id, &pol, now).await?;
        }
        tx.commit().await.map_err(ApiError::from)?;
        self.classes.outbox.notify();
        Ok(grant)
    }

    /// Lobbies are open to the tenant; a minor student chats there only with chat consent. Lobbies
    /// are broadcast rooms, possibly very large: arrivals and departures aren't announced.
    async fn lobby_grant(&self, who: &Identity) -> Result<RoomGrant, Denied> {
        const LOBBY: RoomGrant = RoomGrant { announce: false, ..RoomGrant::PARTICIPANT };
        let auth = auth_user(who)?;
        if auth.role != Role::Student {
            return Ok(LOBBY);
        }
        let mut conn = self.classes.db.pool().acquire().await.map_err(ApiError::from)?;
        let student = users::get_or_404(&mut conn, auth.tenant_id, auth.user_id, self.classes.clock.now()).await?;
        let chat = consent::ensure(&mut conn, &student, &[ConsentScope::Chat]).await.is_ok();
        Ok(RoomGrant { chat, ..LOBBY })
    }

    async fn mark_attendance(
        &self,
        who: &Identity,
        meeting: MeetingId,
        args: &serde_json::Value,
    ) -> Result<(), Denied> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Args {
            student_id: UserId,
            status: AttendanceStatus,
            #[serde(default)]
            allow_negative: bool,
        }
        let args: Args =
            serde_json::from_value(args.clone()).map_err(|e| Denied::new("invalid", format!("bad arguments: {e}")))?;
        let auth = auth_user(who)?;
        let client = ClientInfo { ip: None, request_id: None };
        let marks = vec![StudentMark { student_id: args.student_id, status: args.status }];
        attendance::mark_all(&self.classes, &auth, client, meeting, marks, args.allow_negative).await?;
        Ok(())
    }

    async fn lesson_state(&self, room: &str, args: &serde_json::Value, rooms: &dyn Publisher) -> Result<(), Denied> {
        let state = args["state"].as_str().unwrap_or("");
        if !matches!(state, "started" | "ended") {
            return Err(Denied::new("invalid", "state is `started` or `ended`"));
        }
        rooms
            .publish(room, &serde_json::json!({"kind": "lesson", "state": state}))
            .await
            .map_err(|e| Denied::new("unavailable", e))?;
        Ok(())
    }
}

impl Gate for ClassroomGate {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Identity, Denied>> {
        Box::pin(async move {
            let claims = self.tokens.authenticate(token).await?;
            Ok(Identity {
                user_id: claims.sub.to_string(),
                tenant_id: claims.tid.to_string(),
                name: claims.name,
                role: claims.role.as_str().to_string(),
                session: claims.sid,
            })
        })
    }

    fn authorize<'a>(&'a self, who: &'a Identity, room: &'a str) -> BoxFuture<'a, Result<RoomGrant, Denied>> {
        Box::pin(async move {
            if let Some(user) = room.strip_prefix("user:") {
                return if user == who.user_id {
                    Ok(RoomGrant::READ_ONLY)
                } else {
                    Err(Denied::new("forbidden", "a user channel is its user's alone"))
                };
            }
            if let Some(rest) = room.strip_prefix("lobby:") {
                return match rest.split_once(':') {
                    Some((tenant, name)) if tenant == who.tenant_id && !name.is_empty() => self.lobby_grant(who).await,
                    _ => Err(Denied::new("forbidden", "lobbies are `lobby:<your tenant id>:<name>`")),
                };
            }
            if room.starts_with("lesson:") {
                let lesson = lesson_of(room).ok_or_else(|| Denied::new("bad_room", "not a booking id"))?;
                return self.authorize_lesson(who, lesson).await;
            }
            if room.starts_with("meeting:") {
                let meeting = meeting_of(room).ok_or_else(|| Denied::new("bad_room", "not a meeting id"))?;
                return self.authorize_meeting(who, meeting).await;
            }
            Err(Denied::new("unknown_room", "rooms are user:, meeting:, lesson: or lobby:"))
        })
    }

    fn command<'a>(
        &'a self,
        who: &'a Identity,
        room: &'a str,
        name: &'a str,
        args: &'a serde_json::Value,
        rooms: &'a dyn Publisher,
    ) -> BoxFuture<'a, Result<(), Denied>> {
        Box::pin(async move {
            let meeting = meeting_of(room).ok_or_else(|| Denied::new("unknown_command", "commands run in meetings"))?;
            match name {
                "mark_attendance" => self.mark_attendance(who, meeting, args).await,
                "lesson_state" => self.lesson_state(room, args, rooms).await,
                _ => Err(Denied::new("unknown_command", "commands: mark_attendance, lesson_state")),
            }
        })
    }

    fn chat_posted(&self, room: &str, offset: u64, who: &Identity, text: &str) {
        self.chat.post(chat::ChatRow {
            tenant_id: who.tenant_id.clone(),
            room: room.to_string(),
            offset,
            user_id: who.user_id.clone(),
            user_name: who.name.clone(),
            text: text.to_string(),
            at: self.classes.clock.now(),
        });
    }
}
