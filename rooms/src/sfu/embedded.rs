//! [`Embedded`]: the embedded SFU as a [`MediaBackend`], each call a [`Command`] to the engine.

use futures::future::BoxFuture;
use tokio::sync::oneshot;

use super::{Command, driver::Sfu};
use crate::{Join, JoinRequest, MediaBackend, MediaError, RoomInfo, RoomSpec};

/// The embedded SFU as the media backend: tokens signed with its key pair, `url` = this server.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub sfu: Sfu,
}

impl MediaBackend for Embedded {
    fn name(&self) -> &'static str {
        "embedded"
    }
    fn join(&self, req: &JoinRequest<'_>) -> Join {
        let (token, expires_at_unix) = self.sfu.config.credentials.mint(req);
        Join { backend: self.name(), url: self.sfu.url(), token, expires_at_unix }
    }
    fn create_room<'a>(&'a self, spec: &'a RoomSpec) -> BoxFuture<'a, Result<RoomInfo, MediaError>> {
        Box::pin(async move {
            crate::named(spec)?;
            self.sfu.send(Command::CreateRoom(spec.clone()));
            Ok(RoomInfo { name: spec.name.clone(), backend: self.name() })
        })
    }
    fn close_room<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), MediaError>> {
        Box::pin(async move {
            self.sfu.send(Command::CloseRoom(name.to_string()));
            Ok(())
        })
    }
    fn participants<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<String>, MediaError>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.sfu.send(Command::Participants(room.to_string(), tx));
            rx.await.map_err(|_| MediaError::Unavailable("the SFU engine stopped".into()))
        })
    }
    fn remove_participant<'a>(&'a self, room: &'a str, identity: &'a str) -> BoxFuture<'a, Result<(), MediaError>> {
        Box::pin(async move {
            self.sfu.send(Command::Remove(room.to_string(), identity.to_string()));
            Ok(())
        })
    }
    fn mute_track<'a>(
        &'a self,
        room: &'a str,
        identity: &'a str,
        track_sid: &'a str,
        muted: bool,
    ) -> BoxFuture<'a, Result<(), MediaError>> {
        Box::pin(async move {
            let (done, rx) = oneshot::channel();
            self.sfu.send(Command::Mute {
                room: room.to_string(),
                identity: identity.to_string(),
                track: track_sid.to_string(),
                muted,
                done,
            });
            match rx.await {
                Ok(true) => Ok(()),
                Ok(false) => Err(MediaError::NotFound),
                Err(_) => Err(MediaError::Unavailable("the SFU engine stopped".into())),
            }
        })
    }
}
