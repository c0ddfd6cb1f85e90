from tests.fuzz import profiles

profiles.load()
