//! Gamification: XP, levels, streaks, badges and class leaderboards, driven by domain events.
