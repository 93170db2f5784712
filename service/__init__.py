"""Reciprocity: social-spam detection over follow, retweet, reply and mention streams."""
