#!/usr/bin/env python3
"""Writes metadata/video_metadata.csv: a deterministic catalogue of 600 videos.

Run once; the CSV is committed. Durations follow each genre's usual format
(music clips of minutes, films of hours) so retention curves look real.
"""
import csv
import datetime
import random
import sys

GENRES = {
    # genre: (min seconds, max seconds, title words)
    "drama": (1500, 3600, ["Silent", "Harbor", "Letters", "Winter", "Inheritance", "Crossing"]),
    "comedy": (600, 1800, ["Roommates", "Chaos", "Office", "Wedding", "Neighbours", "Detour"]),
    "documentary": (1800, 5400, ["Oceans", "Empire", "Frontier", "Machines", "Wild", "Origins"]),
    "action": (3600, 8400, ["Strike", "Pursuit", "Iron", "Zero Hour", "Blackout", "Vanguard"]),
    "animation": (420, 1500, ["Pixel", "Moonbeam", "Robots", "Dragon", "Paper", "Meadow"]),
    "music": (150, 420, ["Live", "Acoustic", "Remix", "Session", "Anthem", "Lullaby"]),
    "sports": (300, 6600, ["Highlights", "Derby", "Final", "Rally", "Sprint", "Comeback"]),
    "gaming": (600, 5400, ["Speedrun", "Boss Fight", "Let's Play", "Build", "Raid", "Quest"]),
    "education": (300, 2700, ["Calculus", "History", "Chemistry", "Coding", "Grammar", "Physics"]),
    "news": (90, 900, ["Briefing", "Markets", "Weather", "Election", "Report", "Update"]),
}
FIRST = ["Ada", "Ben", "Chen", "Dara", "Eli", "Femi", "Gita", "Hugo", "Ines", "Jon", "Kai",
         "Lena", "Mo", "Nia", "Omar", "Pia", "Quinn", "Rae", "Sam", "Tove"]
LAST = ["Studio", "Films", "TV", "Media", "Works", "Channel", "Labs", "Pictures"]


def main(path: str) -> None:
    rng = random.Random(20261124)
    creators = sorted({f"{rng.choice(FIRST)} {rng.choice(LAST)}" for _ in range(200)})[:80]
    genres = sorted(GENRES)
    start = datetime.date(2018, 1, 1)
    span = (datetime.date(2026, 11, 20) - start).days
    with open(path, "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["video_id", "title", "genre", "creator", "duration_s", "release_date"])
        for n in range(1, 601):
            genre = rng.choice(genres)
            low, high, words = GENRES[genre]
            first, second = rng.sample(words, 2)
            title = f"{first} {second} #{n}"
            if rng.random() < 0.05:
                title += ", Part 2"  # a comma, so CSV quoting is exercised
            duration = rng.randint(low, high)
            released = start + datetime.timedelta(days=rng.randint(0, span))
            writer.writerow([f"vid-{n:05d}", title, genre, rng.choice(creators), duration,
                             released.isoformat()])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "metadata/video_metadata.csv")
