"""rtsseg.analysis"""
