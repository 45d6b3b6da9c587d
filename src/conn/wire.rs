//! Which frp wire protocol a connection speaks, and the v2 control handshake.
//!
//! v1: type byte + int64 length + JSON. v2 (opt-in, `transport.wireProtocol = "v2"`):
//! the 7-byte magic at the start of every connection or stream, then v2 frames; the
//! control connection adds ClientHello/ServerHello and, after LoginResp, an AEAD
//! stream instead of AES-128-CFB. Payload phases (work and visitor legs) are the same.

use super::{ConnError, FrameReader};
use crate::codec::aead::{control_keys, transcript_hash, AeadAlgorithm, AeadOpener, AeadSealer};
use crate::proto::v2::{
    self, check_server_hello, hello_json, parse_hello, server_hello_error, server_hello_for,
    BootstrapInfo, ClientHello, ServerHello, V2Error,
};
use crate::proto::{decode_frame, encode_frame, FrameError, Message};
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wire {
    #[default]
    V1,
    V2,
}

impl Wire {
    /// `transport.wireProtocol` (validated config: "v1" or "v2").
    pub fn from_config(name: &str) -> Wire {
        if name == "v2" {
            Wire::V2
        } else {
            Wire::V1
        }
    }

    /// Decodes one message at the start of `buf`; never consumes past it.
    pub fn decode(self, buf: &[u8]) -> Result<Option<(Message, usize)>, FrameError> {
        match self {
            Wire::V1 => decode_frame(buf),
            Wire::V2 => Ok(v2::decode_message_frame(buf)?),
        }
    }

    /// Appends one message frame to `out`.
    pub fn encode(self, msg: &Message, out: &mut Vec<u8>) -> Result<(), ConnError> {
        match self {
            Wire::V1 => encode_frame(msg, out),
            Wire::V2 => v2::encode_message_frame(msg, out).map_err(FrameError::from)?,
        }
        Ok(())
    }

    /// Writes one message in a single write, as Go's `WriteMsg` does.
    pub async fn write_msg<W: AsyncWrite + Unpin>(
        self,
        w: &mut W,
        msg: &Message,
    ) -> Result<(), ConnError> {
        let mut out = Vec::with_capacity(128);
        self.encode(msg, &mut out)?;
        w.write_all(&out).await?;
        w.flush().await?;
        Ok(())
    }

    /// The first message of a new work or visitor connection: in v2 the magic goes in
    /// front (frpc's `messageConnector.Connect`), in the same write.
    pub async fn write_first_msg<W: AsyncWrite + Unpin>(
        self,
        w: &mut W,
        msg: &Message,
    ) -> Result<(), ConnError> {
        let mut out = Vec::with_capacity(128);
        if self == Wire::V2 {
            out.extend_from_slice(v2::MAGIC);
        }
        self.encode(msg, &mut out)?;
        w.write_all(&out).await?;
        w.flush().await?;
        Ok(())
    }
}

/// What both ends agreed on in the hellos: enough to key the control AEAD streams.
#[derive(Debug, Clone)]
pub struct V2Crypto {
    pub algorithm: AeadAlgorithm,
    pub transcript: [u8; 32],
}

impl V2Crypto {
    /// (writer, reader) for the client end; `token` is the auth token (frp's
    /// `EncryptionKey()`).
    pub fn client_streams(&self, token: &str) -> (AeadSealer, AeadOpener) {
        let keys = control_keys(token.as_bytes(), self.algorithm, &self.transcript);
        (
            AeadSealer::new(self.algorithm, &keys.client_to_server),
            AeadOpener::new(self.algorithm, &keys.server_to_client),
        )
    }

    /// (writer, reader) for the server end.
    pub fn server_streams(&self, token: &str) -> (AeadSealer, AeadOpener) {
        let keys = control_keys(token.as_bytes(), self.algorithm, &self.transcript);
        (
            AeadSealer::new(self.algorithm, &keys.server_to_client),
            AeadOpener::new(self.algorithm, &keys.client_to_server),
        )
    }
}

/// frpc's side of the v2 control handshake.
pub struct ClientHandshake {
    hello: ClientHello,
    payload: Vec<u8>,
}

impl ClientHandshake {
    pub fn new(bootstrap: BootstrapInfo) -> ClientHandshake {
        let mut random = [0u8; v2::CRYPTO_RANDOM_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random);
        let hello = ClientHello::new(bootstrap, &AeadAlgorithm::preferred(), random);
        let payload = hello_json(&hello);
        ClientHandshake { hello, payload }
    }

    /// Magic, ClientHello and `login`, to be written at once (frpc pipelines them).
    pub fn opening(&self, login: &Message) -> Result<Vec<u8>, ConnError> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(v2::MAGIC);
        v2::encode_raw_frame(v2::FRAME_CLIENT_HELLO, &self.payload, &mut out)
            .map_err(FrameError::from)?;
        Wire::V2.encode(login, &mut out)?;
        Ok(out)
    }

    /// Sends [`Self::opening`] and checks the ServerHello; LoginResp follows on
    /// `reader` (in v2 framing).
    pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut S,
        reader: &mut FrameReader,
        login: &Message,
    ) -> Result<V2Crypto, ConnError> {
        io.write_all(&self.opening(login)?).await?;
        io.flush().await?;
        let (frame_type, payload) = reader.read_v2_frame(io, "ServerHello").await?;
        self.finish(frame_type, &payload)
    }

    /// Checks frps's ServerHello frame and derives the transcript.
    pub fn finish(&self, frame_type: u16, payload: &[u8]) -> Result<V2Crypto, ConnError> {
        if frame_type != v2::FRAME_SERVER_HELLO {
            return Err(FrameError::from(V2Error::UnexpectedFrame {
                got: frame_type,
                want: v2::FRAME_SERVER_HELLO,
            })
            .into());
        }
        let server: ServerHello = parse_hello("ServerHello", payload).map_err(FrameError::from)?;
        if !server.error.is_empty() {
            return Err(ConnError::Rejected(server.error));
        }
        let name = check_server_hello(&self.hello, &server).map_err(FrameError::from)?;
        let algorithm = AeadAlgorithm::from_name(name)
            .expect("check_server_hello accepts only algorithms we implement");
        Ok(V2Crypto {
            algorithm,
            transcript: transcript_hash(&self.payload, payload),
        })
    }
}

/// frps's answer to a ClientHello payload: the ServerHello frame to send and, when the
/// hello was acceptable, the agreed crypto (`handleClientHello`). On `Err`, frps sends
/// the error-carrying ServerHello and closes the connection.
pub fn answer_client_hello(payload: &[u8]) -> (Vec<u8>, Result<V2Crypto, V2Error>) {
    let agreed = parse_hello::<ClientHello>("ClientHello", payload).and_then(|hello| {
        let mut random = [0u8; v2::CRYPTO_RANDOM_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random);
        server_hello_for(&hello, random)
    });
    let server = match &agreed {
        Ok(server) => server.clone(),
        Err(e) => server_hello_error(e.to_string()),
    };
    let server_payload = hello_json(&server);
    let mut frame = Vec::with_capacity(server_payload.len() + v2::FRAME_HEADER_LEN);
    v2::encode_raw_frame(v2::FRAME_SERVER_HELLO, &server_payload, &mut frame)
        .expect("a ServerHello is far below 64 KiB");
    let crypto = agreed.map(|server| V2Crypto {
        algorithm: AeadAlgorithm::from_name(&server.selected.crypto.algorithm)
            .expect("server_hello_for selects only algorithms we implement"),
        transcript: transcript_hash(payload, &server_payload),
    });
    (frame, crypto)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Login, LoginResp};

    #[test]
    fn client_and_server_agree_on_the_keys() {
        let client = ClientHandshake::new(BootstrapInfo {
            transport: "tcp".into(),
            tls: false,
            tcp_mux: true,
        });
        let opening = client.opening(&Message::Login(Login::default())).unwrap();
        assert_eq!(&opening[..7], v2::MAGIC);
        let (hello, used) = v2::decode_raw_frame(&opening[7..]).unwrap().unwrap();
        assert_eq!(hello.frame_type, v2::FRAME_CLIENT_HELLO);
        let login = Wire::V2.decode(&opening[7 + used..]).unwrap().unwrap().0;
        assert_eq!(login, Message::Login(Login::default()));

        let (server_frame, server_crypto) = answer_client_hello(hello.payload);
        let server_crypto = server_crypto.unwrap();
        let (frame, _) = v2::decode_raw_frame(&server_frame).unwrap().unwrap();
        let client_crypto = client.finish(frame.frame_type, frame.payload).unwrap();
        assert_eq!(client_crypto.transcript, server_crypto.transcript);

        let (mut c_seal, mut c_open) = client_crypto.client_streams("tok");
        let (mut s_seal, mut s_open) = server_crypto.server_streams("tok");
        let (mut wire, mut plain) = (Vec::new(), Vec::new());
        c_seal.seal(b"to server", &mut wire).unwrap();
        s_open.open(&wire, &mut plain).unwrap();
        assert_eq!(plain, b"to server");
        wire.clear();
        plain.clear();
        s_seal.seal(b"to client", &mut wire).unwrap();
        c_open.open(&wire, &mut plain).unwrap();
        assert_eq!(plain, b"to client");
        // A different token gives different keys: the first frame fails.
        let (_, mut wrong) = client_crypto.client_streams("other");
        assert!(wrong.open(&wire, &mut Vec::new()).is_err());
    }

    #[test]
    fn refusals_are_reported_both_ways() {
        let (frame, crypto) =
            answer_client_hello(br#"{"capabilities":{"message":{"codecs":["cbor"]}}}"#);
        assert_eq!(crypto.unwrap_err().to_string(), "unsupported message codec");
        let client = ClientHandshake::new(BootstrapInfo::default());
        let (f, _) = v2::decode_raw_frame(&frame).unwrap().unwrap();
        let err = client.finish(f.frame_type, f.payload).unwrap_err();
        assert_eq!(err.to_string(), "unsupported message codec");
        let err = client
            .finish(v2::FRAME_MESSAGE, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unexpected v2 frame type 16, want 2"), "{err}");
        let (_, crypto) = answer_client_hello(b"not json");
        assert!(crypto.unwrap_err().to_string().contains("ClientHello"));
        // LoginResp round-trips through the v2 codec.
        let mut out = Vec::new();
        let resp = Message::LoginResp(LoginResp::default());
        Wire::V2.encode(&resp, &mut out).unwrap();
        assert_eq!(Wire::V2.decode(&out).unwrap().unwrap(), (resp, out.len()));
    }
}
