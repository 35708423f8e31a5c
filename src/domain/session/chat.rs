//! The session's chat: messages are numbered twice — in the session's own
//! sequence (`seq`, what agents see) and, when the customer may read them,
//! in the customer's sequence (`customer_seq`), so that what a customer
//! sees of the numbering reveals nothing about what it cannot see. The
//! messages themselves are not hot state: the command's outcome carries
//! the new one, and the commit appends it to the transcript(s).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::event::Event;
use super::{Outcome, Post, Rules, Session};
use crate::domain::directory::{AgentRef, DisplayName};
use crate::domain::error::DomainError;
use crate::domain::id::{AgentId, MessageId};
use crate::domain::visibility;

/// Longest chat message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4000;

/// Who may read a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Customer and agents.
    Everyone,
    /// The session's agents only.
    Agents,
}

/// Who wrote a chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Author {
    /// A session agent; `masked` as it was when the message was written.
    Agent {
        /// Who.
        agent: AgentRef,
        /// Whether the agent was masked.
        masked: bool,
    },
    /// The customer.
    Customer {
        /// The customer's display name.
        name: DisplayName,
    },
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The message's id.
    pub id: MessageId,
    /// Position in the session's chat, from 1.
    pub seq: u64,
    /// Position among the messages the customer may read, from 1; `None`
    /// when the customer may not read it.
    pub customer_seq: Option<u64>,
    /// Who wrote it.
    pub author: Author,
    /// What it says.
    pub text: String,
    /// Who may read it.
    pub audience: Audience,
    /// When it was written.
    pub sent_at: DateTime<Utc>,
}

/// Who posts a chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poster {
    /// A session agent.
    Agent(AgentId),
    /// The customer.
    Customer,
}

impl Post {
    pub(super) fn apply(
        &self,
        s: &mut Session,
        rules: Rules<'_>,
        out: &mut Outcome,
    ) -> Result<(), DomainError> {
        s.require_active()?;
        if self.text.trim().is_empty() {
            return Err(DomainError::Invalid("text must not be empty".into()));
        }
        if self.text.chars().count() > MAX_MESSAGE_CHARS {
            return Err(DomainError::Invalid(format!(
                "text must be at most {MAX_MESSAGE_CHARS} characters"
            )));
        }
        let by_agent = matches!(self.author, Poster::Agent(_));
        let (author, audience) = match &self.author {
            Poster::Agent(agent) => {
                let p = s.require_participant(agent)?;
                // A masked agent must stay invisible: its words never reach the customer.
                let audience = if p.masked {
                    Audience::Agents
                } else {
                    self.audience
                };
                (
                    Author::Agent {
                        agent: p.agent.clone(),
                        masked: p.masked,
                    },
                    audience,
                )
            }
            Poster::Customer => (
                Author::Customer {
                    name: s.customer.name.clone(),
                },
                Audience::Everyone,
            ),
        };
        // Each side has its own budget: a customer who used up its own
        // still leaves the agents theirs (agents-only notes included).
        let written = if by_agent {
            s.counters.agent_posts()
        } else {
            s.counters.customer_posts
        };
        if written >= u64::from(rules.policy.max_messages_per_session) {
            return Err(DomainError::LimitReached("max_messages_per_session"));
        }
        let mut message = Message {
            id: self.id.clone(),
            seq: s.counters.messages + 1,
            customer_seq: None,
            author,
            text: self.text.clone(),
            audience,
            sent_at: rules.now,
        };
        s.counters.messages += 1;
        if !by_agent {
            s.counters.customer_posts += 1;
        }
        if visibility::customer_may_read(&message) {
            s.counters.customer_messages += 1;
            message.customer_seq = Some(s.counters.customer_messages);
        }
        if by_agent {
            s.touch(rules.now);
        }
        out.events.push(Event::MessagePosted {
            message: message.clone(),
        });
        out.message = Some(message);
        Ok(())
    }
}
