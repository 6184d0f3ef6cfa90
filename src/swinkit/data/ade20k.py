"""ADE20K's scene-parsing benchmark (the 150 classes of ``ADEChallengeData2016``): its class names.

The annotation PNGs hold 0 for "other objects" (ignored in training and scoring) and
1..150 for these classes; readers shift them down by one (mmsegmentation's
``reduce_zero_label``), so that index ``i`` of :data:`ADE20K_CLASSES` is label ``i + 1`` on disk.
"""

from __future__ import annotations

#: The 150 class names in index order, as the benchmark's ``objectInfo150`` lists them (first name of each).
ADE20K_CLASSES: tuple[str, ...] = tuple(
    name.strip()
    for name in """
    wall, building, sky, floor, tree, ceiling, road, bed, windowpane, grass, cabinet, sidewalk, person, earth,
    door, table, mountain, plant, curtain, chair, car, water, painting, sofa, shelf, house, sea, mirror, rug,
    field, armchair, seat, fence, desk, rock, wardrobe, lamp, bathtub, railing, cushion, base, box, column,
    signboard, chest of drawers, counter, sand, sink, skyscraper, fireplace, refrigerator, grandstand, path,
    stairs, runway, case, pool table, pillow, screen door, stairway, river, bridge, bookcase, blind,
    coffee table, toilet, flower, book, hill, bench, countertop, stove, palm, kitchen island, computer,
    swivel chair, boat, bar, arcade machine, hovel, bus, towel, light, truck, tower, chandelier, awning,
    streetlight, booth, television receiver, airplane, dirt track, apparel, pole, land, bannister, escalator,
    ottoman, bottle, buffet, poster, stage, van, ship, fountain, conveyer belt, canopy, washer, plaything,
    swimming pool, stool, barrel, basket, waterfall, tent, bag, minibike, cradle, oven, ball, food, step,
    tank, trade name, microwave, pot, animal, bicycle, lake, dishwasher, screen, blanket, sculpture, hood,
    sconce, vase, traffic light, tray, ashcan, fan, pier, crt screen, plate, monitor, bulletin board, shower,
    radiator, glass, clock, flag
    """.split(",")
)
