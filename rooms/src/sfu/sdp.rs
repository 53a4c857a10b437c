//! The little SDP reading and rewriting the SFU does itself; str0m does the rest.
//!
//! LiveKit's single-PeerConnection mode is told apart by direction: a client's own tracks are `sendonly`
//! m-lines whose `a=msid` track id is the `cid` it named in `AddTrackRequest`; the others are `recvonly`
//! slots the server fills with other participants' tracks. An answer names which track fills a slot with
//! `a=msid:<PA_publisher>|<TR_track> <TR_track>` (the SDKs read the participant and track from it), and a
//! slot with nothing in it is answered `inactive`.

use std::collections::HashMap;

/// One m-line of a client's offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub mid: String,
    /// `audio`, `video` or `application`.
    pub kind: String,
    /// `sendrecv`, `sendonly`, `recvonly` or `inactive` (as the offerer sees it).
    pub direction: String,
    /// The `a=msid` track id, if any.
    pub track_id: Option<String>,
    /// Port 0: a rejected or stopped m-line.
    pub stopped: bool,
}

impl Section {
    /// The client sends on it: one of its own tracks.
    pub fn client_sends(&self) -> bool {
        !self.stopped
            && matches!(self.direction.as_str(), "sendonly" | "sendrecv")
            && matches!(self.kind.as_str(), "audio" | "video")
    }
    /// A slot for the server to fill.
    pub fn is_slot(&self) -> bool {
        !self.stopped && self.direction == "recvonly" && matches!(self.kind.as_str(), "audio" | "video")
    }
}

/// The m-lines of an SDP, in order.
pub fn sections(sdp: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut f = m.split_whitespace();
            let kind = f.next().unwrap_or_default().to_string();
            let stopped = f.next() == Some("0");
            out.push(Section { mid: String::new(), kind, direction: "sendrecv".into(), track_id: None, stopped });
            continue;
        }
        let Some(s) = out.last_mut() else { continue };
        if let Some(mid) = line.strip_prefix("a=mid:") {
            s.mid = mid.to_string();
        } else if let Some(msid) = line.strip_prefix("a=msid:") {
            s.track_id = msid.split_whitespace().nth(1).map(str::to_string);
        } else if let Some(d) = line.strip_prefix("a=")
            && matches!(d, "sendrecv" | "sendonly" | "recvonly" | "inactive")
        {
            s.direction = d.to_string();
        }
    }
    out
}

/// Rewrites an answer: each slot in `filled` (mid → (stream id, track id)) goes `sendonly` with that msid;
/// each mid in `empty` goes `inactive` without msid. Other m-lines are left as they are.
pub fn rewrite_answer(sdp: &str, filled: &HashMap<String, (String, String)>, empty: &[String]) -> String {
    let mut out = String::with_capacity(sdp.len() + 64 * filled.len());
    // Lines of the current m-section are held until its mid is known (a=mid may follow a=msid).
    let mut section: Vec<&str> = Vec::new();
    let flush = |section: &mut Vec<&str>, out: &mut String| {
        let mid = section.iter().find_map(|l| l.strip_prefix("a=mid:")).map(str::to_string);
        let fill = mid.as_ref().and_then(|m| filled.get(m));
        let blank = mid.as_ref().is_some_and(|m| empty.contains(m));
        let mut wrote_msid = false;
        for line in section.drain(..) {
            let is_dir = matches!(line, "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive");
            let is_msid = line.starts_with("a=msid:") || (line.starts_with("a=ssrc:") && line.contains(" msid:"));
            match (fill, blank) {
                (Some((stream, track)), _) if is_dir => {
                    out.push_str("a=sendonly\r\n");
                    if !wrote_msid {
                        out.push_str(&format!("a=msid:{stream} {track}\r\n"));
                        wrote_msid = true;
                    }
                }
                (Some(_), _) if is_msid => {}
                (None, true) if is_dir => out.push_str("a=inactive\r\n"),
                (None, true) if is_msid => {}
                _ => {
                    out.push_str(line);
                    out.push_str("\r\n");
                }
            }
        }
    };
    for line in sdp.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            flush(&mut section, &mut out);
        }
        if line.is_empty() {
            continue;
        }
        section.push(line);
    }
    flush(&mut section, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\na=msid:stream-1 cid-video\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n\
        m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=inactive\r\n";

    #[test]
    fn sections_tell_own_tracks_from_slots() {
        let s = sections(OFFER);
        assert_eq!(s.len(), 4);
        assert!(s[0].is_slot() && !s[0].client_sends());
        assert_eq!((s[1].client_sends(), s[1].track_id.as_deref()), (true, Some("cid-video")));
        assert!(!s[2].is_slot() && !s[2].client_sends());
        assert!(s[3].stopped && !s[3].is_slot());
    }

    #[test]
    fn answers_name_the_track_in_a_filled_slot_and_blank_the_rest() {
        let answer = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\na=sendonly\r\na=msid:random rnd\r\na=ssrc:5 msid:random rnd\r\n\
            a=ssrc:5 cname:x\r\nm=video 9 X 96\r\na=mid:4\r\na=sendonly\r\na=msid:r2 r2\r\nm=video 9 X 96\r\na=mid:1\r\na=recvonly\r\n";
        let filled = HashMap::from([("0".to_string(), ("PA_a|TR_b".to_string(), "TR_b".to_string()))]);
        let out = rewrite_answer(answer, &filled, &["4".to_string()]);
        let s = sections(&out);
        assert_eq!((s[0].direction.as_str(), s[0].track_id.as_deref()), ("sendonly", Some("TR_b")));
        assert!(out.contains("a=msid:PA_a|TR_b TR_b\r\n") && !out.contains("random") && out.contains("cname:x"));
        assert_eq!((s[1].direction.as_str(), s[1].track_id.as_deref()), ("inactive", None));
        assert_eq!(s[2].direction, "recvonly");
        assert!(out.ends_with("a=recvonly\r\n"));
    }
}
