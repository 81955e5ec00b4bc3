"""Enrolled speakers: enrollment lists, speaker models, the speaker store and identification."""
