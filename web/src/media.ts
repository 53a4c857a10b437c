// Audio and video through livekit-client: one `Room` connected to the `url` and `token` that the join
// endpoint returned (the embedded SFU or a LiveKit server; the code is the same). We publish camera and
// microphone without simulcast (the embedded SFU forwards one layer) and show every remote participant's
// video and play their audio. Each remote <video> carries `data-identity` = the participant's identity,
// which is their user id.

import {
  LocalTrackPublication,
  Participant,
  RemoteParticipant,
  RemoteTrack,
  Room,
  RoomEvent,
  Track,
  type DisconnectReason,
} from 'livekit-client';

export interface MediaUi {
  status(text: string, ok: boolean): void;
  error(text: string): void;
}

export class Media {
  readonly room = new Room({
    adaptiveStream: false,
    dynacast: false,
    publishDefaults: { simulcast: false },
  });

  /** This room's tiles, inside the page's video area. */
  private readonly grid = document.createElement('div');

  constructor(
    area: HTMLElement,
    private readonly ui: MediaUi,
  ) {
    this.grid.className = 'grid';
    area.replaceChildren(this.grid);
    const r = this.room;
    r.on(RoomEvent.TrackSubscribed, (track: RemoteTrack, _pub, p: RemoteParticipant) => this.show(track, p));
    r.on(RoomEvent.TrackUnsubscribed, (track: RemoteTrack) => track.detach().forEach((el) => el.remove()));
    r.on(RoomEvent.ParticipantConnected, (p: RemoteParticipant) => this.tile(p));
    r.on(RoomEvent.ParticipantDisconnected, (p: RemoteParticipant) => this.tileOf(p)?.remove());
    r.on(RoomEvent.LocalTrackPublished, (pub: LocalTrackPublication) => {
      if (pub.track?.kind === Track.Kind.Video) {
        const el = pub.track.attach() as HTMLVideoElement;
        el.muted = true;
        this.tile(r.localParticipant).querySelector('.media')!.append(el);
      }
    });
    r.on(RoomEvent.Reconnecting, () => ui.status('media: reconnecting…', false));
    r.on(RoomEvent.Reconnected, () => ui.status('media: connected', true));
    r.on(RoomEvent.Disconnected, (reason?: DisconnectReason) =>
      ui.status(`media: disconnected${reason !== undefined ? ` (reason ${reason})` : ''}`, false),
    );
    r.on(RoomEvent.MediaDevicesError, (e: Error) => ui.error(`camera/microphone: ${e.message}`));
    r.on(RoomEvent.AudioPlaybackStatusChanged, () => this.audioButton());
  }

  async connect(url: string, token: string, publish: boolean): Promise<void> {
    this.ui.status('media: connecting…', false);
    await this.room.connect(url, token);
    this.ui.status('media: connected', true);
    for (const p of this.room.remoteParticipants.values()) this.tile(p);
    if (publish) {
      this.tile(this.room.localParticipant);
      try {
        await this.room.localParticipant.enableCameraAndMicrophone();
      } catch (e) {
        this.ui.error(`could not publish camera and microphone: ${(e as Error).message}`);
      }
    }
    await this.room.startAudio().catch(() => this.audioButton());
  }

  disconnect(): void {
    void this.room.disconnect();
    this.grid.remove();
  }

  private show(track: RemoteTrack, p: RemoteParticipant): void {
    const el = track.attach();
    if (track.kind === Track.Kind.Video) {
      el.dataset.identity = p.identity;
      (el as HTMLVideoElement).playsInline = true;
    }
    this.tile(p).querySelector('.media')!.append(el);
  }

  private tileOf(p: Participant): HTMLElement | null {
    return this.grid.querySelector(`.tile[data-participant="${CSS.escape(p.identity)}"]`);
  }

  /** The participant's tile, created on first use: their name over their video (and hidden audio). */
  private tile(p: Participant): HTMLElement {
    let tile = this.tileOf(p);
    if (!tile) {
      tile = document.createElement('figure');
      tile.className = 'tile';
      tile.dataset.participant = p.identity;
      if (p === this.room.localParticipant) tile.classList.add('local');
      const media = document.createElement('div');
      media.className = 'media';
      const name = document.createElement('figcaption');
      name.textContent = (p.name || p.identity) + (p === this.room.localParticipant ? ' (you)' : '');
      tile.append(media, name);
      this.grid.append(tile);
    }
    return tile;
  }

  /** Browsers may block audio until a click: offer one when they do. */
  private audioButton(): void {
    const id = 'start-audio';
    document.getElementById(id)?.remove();
    if (this.room.canPlaybackAudio) return;
    const b = document.createElement('button');
    b.id = id;
    b.textContent = 'Enable audio';
    b.onclick = () => void this.room.startAudio().then(() => b.remove());
    this.grid.before(b);
  }
}
