"""Openness rubrics: loads checks/*.yaml and evaluates MOF, OSAID, the OSAI index and openaudit's score."""
