//! The SASL layer (AMQP 1.0 §5.3): mechanisms offered, sasl-init reported to the application, outcome
//! sent on its answer. Challenge-response mechanisms are not offered, so the exchange is always
//! init → outcome.

use super::{Engine, EngineError, Event, Phase, SaslAuthentication};
use crate::definitions::{Error, condition};
use crate::frame::ProtocolId;
use crate::sasl::{SaslCode, SaslFrame, SaslMechanisms, SaslOutcome};

impl Engine {
    /// §5.3.2: answers the SASL header with ours and the mechanisms offered.
    pub(super) fn start_sasl(&mut self) {
        self.out.header(ProtocolId::Sasl, self.now);
        let mechanisms = SaslFrame::Mechanisms(SaslMechanisms {
            sasl_server_mechanisms: self.config.sasl_mechanisms.clone(),
        });
        self.out.sasl(&mechanisms, self.now);
        self.phase = Phase::SaslInit;
    }

    pub(super) fn on_sasl_frame(&mut self, frame: SaslFrame) {
        let SaslFrame::Init(init) = frame else {
            self.finish(
                Some(Error::new(condition::NOT_ALLOWED, "expected sasl-init")),
                false,
            );
            return;
        };
        if !self.config.sasl_mechanisms.contains(&init.mechanism) {
            let description = format!("sasl mechanism {} is not offered", init.mechanism.as_str());
            self.send_outcome(SaslCode::Auth);
            self.finish(
                Some(Error::new(condition::UNAUTHORIZED_ACCESS, description)),
                false,
            );
            return;
        }
        let authentication = SaslAuthentication {
            mechanism: init.mechanism,
            initial_response: init.initial_response,
            hostname: init.hostname,
        };
        self.sasl = Some(authentication.clone());
        self.phase = Phase::SaslPending;
        self.events.push_back(Event::SaslInit(authentication));
    }

    /// Answers the pending [`Event::SaslInit`] (§5.3.3.5): `ok` sends outcome `ok` and waits for the
    /// AMQP header; otherwise outcome `auth` is sent and the connection is closed. Input that arrived
    /// meanwhile is still in the caller's buffer: call [`handle_input`](Self::handle_input) again.
    ///
    /// # Errors
    ///
    /// Returns [`EngineError::NoSaslPending`] when no sasl-init awaits an answer.
    pub fn sasl_outcome(&mut self, ok: bool) -> Result<(), EngineError> {
        if self.phase != Phase::SaslPending {
            return Err(EngineError::NoSaslPending);
        }
        if ok {
            self.send_outcome(SaslCode::Ok);
            self.phase = Phase::AmqpHeader;
        } else {
            self.send_outcome(SaslCode::Auth);
            self.finish(
                Some(Error::new(
                    condition::UNAUTHORIZED_ACCESS,
                    "sasl authentication failed",
                )),
                false,
            );
        }
        Ok(())
    }

    fn send_outcome(&mut self, code: SaslCode) {
        let outcome = SaslFrame::Outcome(SaslOutcome {
            code,
            additional_data: None,
        });
        self.out.sasl(&outcome, self.now);
    }
}
